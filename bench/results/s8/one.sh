#!/bin/bash
# one.sh BIN_DIR NAME DRIVERS INTERVAL DURATION [extra drive args]: fresh broker, one drive run with --pid, broker stopped.
B=$1; NAME=$2; D=$3; I=$4; DUR=$5; shift 5
FB=${FB:-/tmp/s8bin/base/fleetmq-bench}
OUT=${OUT:-/tmp/s8/runs}
MP=27883; HP=27880
rm -rf /tmp/s8/data; mkdir -p /tmp/s8/data
(cd /tmp/s8/data && RUST_LOG=warn exec env $BENV $B/fleetmq serve --mqtt 127.0.0.1:$MP --http 127.0.0.1:$HP > /tmp/s8/broker.log 2>&1) &
BP=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:$HP/readyz >/dev/null && break; sleep 0.1; done
if [ -n "$PERF" ]; then perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p $BP -o /tmp/s8/$NAME.perf.data -- sleep $PERF >/dev/null 2>&1 & fi
L0=$(cut -d' ' -f1 /proc/loadavg)
$FB drive --mqtt 127.0.0.1:$MP --drivers $D --interval-ms $I --duration $DUR --pid $BP --json $OUT/$NAME.json "$@" > $OUT/$NAME.txt 2>&1
DROPPED=$(curl -sf http://127.0.0.1:$HP/metrics | grep '^fleetmq_messages_dropped_total' | awk '{print $2}')
RSS=$(grep VmHWM /proc/$BP/status | awk '{print $2}')
L1=$(cut -d' ' -f1 /proc/loadavg)
wait %2 2>/dev/null
kill $BP; wait $BP 2>/dev/null
python3 - "$OUT/$NAME.json" "$NAME" "$L0" "$L1" "$DROPPED" "$RSS" <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); n=sys.argv[2]
lat=j.get("latency_us",{})
print(f'{n}: load {sys.argv[3]}-{sys.argv[4]} sent {j["updates_sent"]} rate {j["updates_per_sec"]:.0f}/s p50 {lat.get("p50",0)/1000:.1f} p99 {lat.get("p99",0)/1000:.1f} ms lost {j.get("lost")} dropped {sys.argv[5]} cpu {j.get("broker_cpu_us_per_update",0):.2f} us/upd peakRSS {int(sys.argv[6])//1024} MB')
PY
