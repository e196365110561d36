#!/bin/bash
# Session 13 A/B: per round, for each build in BUILDS (name=path to a fleetmq binary), a fresh
# single node (--redis) and then a fresh 3-node cluster (--cluster), each on a fresh
# redis-server; `drive` DRIVERS (10,000) x 1 Hz for DURATION (60) s with 300 WebSocket riders
# (in the cluster each rider on another node than its vehicle's driver); broker CPU per update
# of the node(s) (--pid) and of redis-server; the worst latency of each of the first seconds.
B=${B:-/tmp/s13}
FB=${FB:-/work/main/target/release/fleetmq-bench}
DRIVERS=${DRIVERS:-10000}
mkdir -p $B/results
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
one() { # label binary nodes(1|3)
  local label=$1 bin=$2 nodes=$3 pids=() mq= ws=
  redis-server --port 26500 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 &
  local rp=$!
  for i in $(seq 50); do redis-cli -p 26500 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  for n in $(seq $nodes); do
    local cl=; [ $nodes -gt 1 ] && cl="--cluster --node-id n$n"
    (cd $B && RUST_LOG=warn exec $bin serve $cl --redis redis://127.0.0.1:26500 \
       --mqtt 127.0.0.1:2160$n --http 127.0.0.1:2170$n > $B/$label-n$n.log 2>&1) &
    pids+=($!)
  done
  for n in $(seq $nodes); do for i in $(seq 100); do curl -sf http://127.0.0.1:2170$n/readyz >/dev/null && break; sleep 0.1; done; done
  if [ $nodes -gt 1 ]; then
    mq=127.0.0.1:21601,127.0.0.1:21602,127.0.0.1:21603
    ws=ws://127.0.0.1:21702/ws,ws://127.0.0.1:21703/ws,ws://127.0.0.1:21701/ws
  else
    mq=127.0.0.1:21601; ws=ws://127.0.0.1:21701/ws
  fi
  sleep ${GAP:-5}
  local r0=$(ticks $rp)
  echo "=== $label start $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  $FB drive --mqtt $mq --ws $ws --drivers $DRIVERS --interval-ms 1000 --duration ${DURATION:-60} \
     --watch riders=300 --pid $(IFS=,; echo "${pids[*]}") --json $B/results/$label.json > $B/results/$label.txt 2>/dev/null
  echo "  redis ticks $(( $(ticks $rp) - r0 ))"
  python3 - $B/results/$label.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
w = [round(x / 1000, 1) for x in d['latency_max_per_s_us']]
l = d['latency_us']
print(f"  updates/s {d['updates_per_sec']:.0f} lost {d['lost']} µs/update {d['broker_cpu_us_per_update']:.2f}"
      f" p50/p99/max {l['p50']/1000:.2f}/{l['p99']/1000:.1f}/{l['max']/1000:.1f} ms"
      f" worst s0-4 {max(w[:5]) if w else 0} ms, from s5 {max(w[5:]) if len(w) > 5 else 0} ms")
if 'broker_cpu_us_per_update_steady' in d:  # fleetmq-bench from session 22 on
    print(f"  µs/update from s {d['warmup_s']} of driving to the last fix: {d['broker_cpu_us_per_update_steady']:.2f}")
if 'latency_steady_us' in d:  # fleetmq-bench from session 14 on
    s = d['latency_steady_us']
    print(f"  from s {d['warmup_s']} of driving: p50/p99/max {s['p50']/1000:.2f}/{s['p99']/1000:.1f}/{s['max']/1000:.1f} ms")
PY
  kill ${pids[@]}; wait ${pids[@]} 2>/dev/null
  kill $rp; wait $rp 2>/dev/null
}
for round in ${ROUNDS:-1}; do
  for mode in ${MODES:-1 3}; do
    for b in $BUILDS; do one ${b%%=*}-$mode-r$round ${b#*=} $mode; done
  done
done
