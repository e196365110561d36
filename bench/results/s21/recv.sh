#!/bin/bash
# Session 21: what one node pays to take in another node's outputs. A fresh redis-server and
# a 2-node cluster (--cluster --redis); `drive` DRIVERS (10,000) x 1 Hz for DURATION (30) s,
# every driver and one MQTT watcher on node n1, nothing on n2. n2's CPU over the drive is the
# reception of every state (and its offline marks and events); n1's is the processing.
# MODE=single runs n1 alone without --cluster (same Redis), the single node to compare with.
# Usage: BIN=path/to/fleetmq LABEL=x [MODE=single] bash recv.sh   (FB = fleetmq-bench)
B=${B:-/tmp/s21}
FB=${FB:-/work/main/target/release/fleetmq-bench}
DRIVERS=${DRIVERS:-10000}
mkdir -p $B
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
redis-server --port 26600 --bind 127.0.0.1 --save '' --appendonly no > $B/redis.log 2>&1 &
rp=$!
for i in $(seq 50); do redis-cli -p 26600 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
pids=()
NODES="1 2"; [ "$MODE" = single ] && NODES=1
for n in $NODES; do
  CL="--cluster --node-id n$n"; [ "$MODE" = single ] && CL=
  (cd $B && RUST_LOG=warn exec $BIN serve $CL --redis redis://127.0.0.1:26600 \
     --mqtt 127.0.0.1:2180$n --http 127.0.0.1:2190$n > $B/$LABEL-n$n.log 2>&1) &
  pids+=($!)
done
for n in $NODES; do for i in $(seq 100); do curl -sf http://127.0.0.1:2190$n/readyz >/dev/null && break; sleep 0.1; done; done
sleep 3
t2of() { [ -n "${pids[1]}" ] && ticks ${pids[1]} || echo 0; }
t1=$(ticks ${pids[0]}); t2=$(t2of); r0=$(ticks $rp)
# PERF=1: perf record of n1 for 15 s from s 8 of the drive (report in $B/$LABEL-n1.top);
# PERF=n2: of the receiving node n2 instead, with call graphs ($B/$LABEL-n2.data).
if [ "$PERF" = n2 ]; then
  (sleep 8; perf record --call-graph dwarf,16384 -F 299 -o $B/$LABEL-n2.data -p ${pids[1]} -- sleep 15 >/dev/null 2>&1) &
  perfp=$!
elif [ -n "$PERF" ]; then
  (sleep 8; perf record -F 499 -o $B/$LABEL-n1.data -p ${pids[0]} -- sleep 15 >/dev/null 2>&1) &
  perfp=$!
fi
$FB drive --mqtt 127.0.0.1:21801 --pid ${pids[0]} --drivers $DRIVERS --interval-ms 1000 --duration ${DURATION:-30} \
   --watchers 1 --json $B/$LABEL.json > $B/$LABEL.txt 2>/dev/null
[ -n "$PERF" ] && wait $perfp && [ "$PERF" != n2 ] && perf report -i $B/$LABEL-n1.data --no-children --sort sym --stdio 2>/dev/null \
   | grep -v "^#" | grep -v "^$" | head -80 > $B/$LABEL-n1.top
# n2 may still be taking in the last frames: wait until its CPU stops moving.
prev=-1; for i in $(seq 50); do cur=$(t2of); [ "$cur" = "$prev" ] && break; prev=$cur; sleep 0.2; done
u1=$(( $(ticks ${pids[0]}) - t1 )); u2=$(( $(t2of) - t2 )); ur=$(( $(ticks $rp) - r0 ))
python3 - $B/$LABEL.json $u1 $u2 $ur $LABEL <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); u1, u2, ur = map(int, sys.argv[2:5])
n = d['updates_sent'] if 'updates_sent' in d else d['updates_per_sec'] * d.get('duration_s', 30)
hz = 100
st = d.get('broker_cpu_us_per_update_steady')
print(f"{sys.argv[5]}: updates {n:.0f}  n1 {u1/hz/n*1e6:.2f} µs/update (steady {st:.2f})  n2 (reception) {u2/hz/n*1e6:.2f}  redis {ur/hz/n*1e6:.2f}")
PY
kill ${pids[@]}; wait ${pids[@]} 2>/dev/null
kill $rp; wait $rp 2>/dev/null
