#!/bin/bash
# 3-node cluster, 10k drivers x 1 Hz x 40 s, 300 riders; perf record node n2 for 15 s from second 15.
B=/tmp/s14perf; mkdir -p $B; bin=${1:-/tmp/s14/new2/fleetmq}; FB=/tmp/s14/base/fleetmq-bench
redis-server --port 26500 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 & rp=$!
for i in $(seq 50); do redis-cli -p 26500 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
pids=()
for n in 1 2 3; do
  (cd $B && RUST_LOG=warn exec $bin serve --cluster --node-id n$n --redis redis://127.0.0.1:26500 \
     --mqtt 127.0.0.1:2160$n --http 127.0.0.1:2170$n > $B/n$n.log 2>&1) & pids+=($!)
done
for n in 1 2 3; do for i in $(seq 100); do curl -sf http://127.0.0.1:2170$n/readyz >/dev/null && break; sleep 0.1; done; done
$FB drive --mqtt 127.0.0.1:21601,127.0.0.1:21602,127.0.0.1:21603 --ws ws://127.0.0.1:21702/ws,ws://127.0.0.1:21703/ws,ws://127.0.0.1:21701/ws \
  --drivers 10000 --interval-ms 1000 --duration 40 --watch riders=300 --pid $(IFS=,; echo "${pids[*]}") --json $B/drive.json > $B/drive.txt 2>&1 &
dp=$!
sleep 15
perf record -e cpu-clock --call-graph dwarf,16384 -p ${pids[1]} -o $B/perf.data -- sleep 6 > $B/perf.log 2>&1
wait $dp
kill ${pids[@]}; wait ${pids[@]} 2>/dev/null; kill $rp; wait $rp 2>/dev/null
python3 -c "import json;d=json.load(open('$B/drive.json'));print(d['broker_cpu_us_per_update'], d['latency_us']['p99'])"
