#!/bin/bash
# Session 22: where a 3-node cluster's CPU per update goes, node by node. As s13/ab.sh (fresh
# redis-server, NODES (3) nodes or one without --cluster, `drive` 10,000 drivers x 1 Hz spread
# over the nodes, 300 WebSocket riders each on another node than its vehicle's driver) for
# DURATION (40) s, with each node's CPU ticks over the drive and, with PERF=1, a perf profile of
# n1 for PERF_FOR (20) s from s PERF_AT (8) ($B/$LABEL-n1.data; `perf report -i` it; PERF=g with call graphs).
# SPLIT=1 runs the nodes without --cluster (each rider on its vehicle's node): the cost of
# splitting the load over processes without any cross-node traffic.
# ONE_DRIVING=1 puts every driver on n1 (the others only receive).
# Usage: BIN=path/to/fleetmq FB=path/to/fleetmq-bench LABEL=x [NODES=1] [SPLIT=1] [PERF=1] bash three.sh
B=${B:-/tmp/s22}
NODES=${NODES:-3}
mkdir -p $B
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
redis-server --port 26700 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 &
rp=$!
for i in $(seq 50); do redis-cli -p 26700 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
pids=(); mq=(); ws=()
for n in $(seq $NODES); do
  cl=; [ $NODES -gt 1 ] && [ -z "$SPLIT" ] && cl="--cluster --node-id n$n"
  (cd $B && RUST_LOG=warn exec $BIN serve $cl --redis redis://127.0.0.1:26700 \
     --mqtt 127.0.0.1:2200$n --http 127.0.0.1:2210$n > $B/$LABEL-n$n.log 2>&1) &
  pids+=($!); mq+=(127.0.0.1:2200$n)
done
# Rider j watches driver j's vehicle: put it on the next node.
for n in $(seq $NODES); do
  w=$(( n % NODES + 1 )); [ -n "$SPLIT" ] && w=$n
  ws+=(ws://127.0.0.1:2210$w/ws)
done
for n in $(seq $NODES); do for i in $(seq 100); do curl -sf http://127.0.0.1:2210$n/readyz >/dev/null && break; sleep 0.1; done; done
sleep 3
t0=(); for p in ${pids[@]}; do t0+=($(ticks $p)); done; r0=$(ticks $rp)
echo "${pids[*]}" > $B/$LABEL.pids
if [ "$PERF" = all ]; then
  (sleep ${PERF_AT:-8}; perf record -a -F 299 -o $B/$LABEL-all.data -- sleep ${PERF_FOR:-15} >/dev/null 2>&1) &
  perfp=$!
elif [ -n "$PERF" ]; then
  g=; [ "$PERF" = g ] && g="--call-graph dwarf,16384 -F 149" || g="-F 499"
  (sleep ${PERF_AT:-8}; perf record $g -o $B/$LABEL-n1.data -p ${pids[0]} -- sleep ${PERF_FOR:-20} >/dev/null 2>&1) &
  perfp=$!
fi
[ -n "$ONE_DRIVING" ] && mq=(${mq[0]})
$FB drive --mqtt $(IFS=,; echo "${mq[*]}") --ws $(IFS=,; echo "${ws[*]}") --drivers ${DRIVERS:-10000} \
   --interval-ms 1000 --duration ${DURATION:-40} --watch riders=300 --pid $(IFS=,; echo "${pids[*]}") \
   --json $B/$LABEL.json > $B/$LABEL.txt 2>/dev/null
[ -n "$PERF" ] && wait $perfp
per=; for i in ${!pids[@]}; do per="$per n$((i+1)) $(( $(ticks ${pids[$i]}) - ${t0[$i]} ))"; done
python3 - $B/$LABEL.json $LABEL "$per" $(( $(ticks $rp) - r0 )) <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = d['updates_sent']
per = sys.argv[3].split(); ur = int(sys.argv[4])
nodes = "  ".join(f"{per[i]} {int(per[i+1])/100/n*1e6:.2f}" for i in range(0, len(per), 2))
print(f"{sys.argv[2]}: updates {n}  µs/update {d['broker_cpu_us_per_update']:.2f} (steady "
      f"{d.get('broker_cpu_us_per_update_steady', 0):.2f})  per node: {nodes}  redis {ur/100/n*1e6:.2f}"
      f"  p99 {d['latency_us']['p99']/1000:.1f} ms")
PY
kill ${pids[@]}; wait ${pids[@]} 2>/dev/null
kill $rp; wait $rp 2>/dev/null
