#!/bin/bash
# perf13.sh BIN LABEL NODES: ab.sh's run with perf record (no call graph) of node 1 for 20 s, utime/stime of each node
BIN=$1; L=$2; N=${3:-3}; B=/tmp/s19/p13; mkdir -p $B; pids=()
redis-server --port 26600 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 &
RP=$!
for i in $(seq 50); do redis-cli -p 26600 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
for n in $(seq $N); do
  cl=; [ $N -gt 1 ] && cl="--cluster --node-id n$n"
  (cd $B && RUST_LOG=warn exec $BIN serve $cl --redis redis://127.0.0.1:26600 --mqtt 127.0.0.1:2260$n --http 127.0.0.1:2270$n > $B/$L-n$n.log 2>&1) &
  pids+=($!)
done
for n in $(seq $N); do for i in $(seq 100); do curl -sf http://127.0.0.1:2270$n/readyz >/dev/null && break; sleep 0.1; done; done
if [ $N -gt 1 ]; then mq=127.0.0.1:22601,127.0.0.1:22602,127.0.0.1:22603; ws=ws://127.0.0.1:22702/ws,ws://127.0.0.1:22703/ws,ws://127.0.0.1:22701/ws
else mq=127.0.0.1:22601; ws=ws://127.0.0.1:22701/ws; fi
${FB:-/tmp/s19/base/fleetmq-bench} drive --mqtt $mq --ws $ws --drivers 10000 --interval-ms 1000 --duration 45 --watch riders=300 --pid $(IFS=,; echo "${pids[*]}") --json $B/$L.json > $B/$L.txt 2>&1 &
DP=$!
sleep 15
for p in ${pids[@]}; do echo "before $p $(awk '{print $14, $15}' /proc/$p/stat)"; done
perf record -F 999 -o $B/$L.perf -p ${pids[0]} -- sleep 20 2>/dev/null
for p in ${pids[@]}; do echo "after $p $(awk '{print $14, $15}' /proc/$p/stat)"; done
wait $DP
python3 -c "import json;d=json.load(open('$B/$L.json'));print('us/update', d['broker_cpu_us_per_update'], 'sent/s', d['updates_per_sec'])"
kill ${pids[@]}; wait ${pids[@]} 2>/dev/null; kill $RP; wait $RP 2>/dev/null
