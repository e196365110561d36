#!/bin/bash
# Session 13: the cluster's first seconds. Per round and per build in BUILDS (name=path to a
# fleetmq binary): a redis-server and 3 cluster nodes of that build, fresh, then
# `drive` 10,000 drivers x 1 Hz for DURATION s with 300 riders; prints the worst latency of
# each of the first 12 seconds and the lease metrics. Every process is stopped after its run.
B=${B:-/tmp/s13}
FB=${FB:-/work/main/target/release/fleetmq-bench}
DRIVERS=${DRIVERS:-10000}
mkdir -p $B/results
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
one() { # label binary
  local label=$1 bin=$2 pids=()
  redis-server --port 26500 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 &
  local rp=$!
  for i in $(seq 50); do redis-cli -p 26500 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  for n in 1 2 3; do
    (cd $B && RUST_LOG=warn exec $bin serve --cluster --node-id n$n --redis redis://127.0.0.1:26500 \
       --mqtt 127.0.0.1:2160$n --http 127.0.0.1:2170$n > $B/$label-n$n.log 2>&1) &
    pids+=($!)
  done
  for n in 1 2 3; do for i in $(seq 100); do curl -sf http://127.0.0.1:2170$n/readyz >/dev/null && break; sleep 0.1; done; done
  local r0=$(ticks $rp)
  echo "=== $label start $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  $FB drive --mqtt 127.0.0.1:21601,127.0.0.1:21602,127.0.0.1:21603 \
     --ws ws://127.0.0.1:21702/ws,ws://127.0.0.1:21703/ws,ws://127.0.0.1:21701/ws \
     --drivers $DRIVERS --interval-ms 1000 --duration ${DURATION:-20} --watch riders=300 \
     --pid ${pids[0]},${pids[1]},${pids[2]} --json $B/results/$label.json > $B/results/$label.txt 2>/dev/null
  grep -E "latency|µs|lost|worst" $B/results/$label.txt | head -8
  python3 -c "import json; d=json.load(open('$B/results/$label.json')); print('  worst/s ms:', [round(x/1000,1) for x in d['latency_max_per_s_us'][:12]])"
  echo "  redis ticks $(( $(ticks $rp) - r0 ))"
  curl -s http://127.0.0.1:21701/metrics | grep -E '^fleetmq_cluster_lease' | head -12 | sed 's/^/  n1 /'
  kill ${pids[@]}; wait ${pids[@]} 2>/dev/null
  kill $rp; wait $rp 2>/dev/null
}
for round in ${ROUNDS:-1}; do
  for b in $BUILDS; do one ${b%%=*}-r$round ${b#*=}; sleep ${GAP:-3}; done
done
