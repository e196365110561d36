#!/bin/bash
# one15.sh BIN LABEL [DRIVERS] [INTERVAL]: a fresh single node, no Redis; drive with one MQTT watcher; --pid
# FB: the fleetmq-bench binary (default: the base build's, as run in session 19).
BIN=$1; L=$2; D=${3:-1000}; I=${4:-100}; W=/tmp/s19/w
rm -rf $W/d-$L; mkdir -p $W/d-$L
(cd $W/d-$L && RUST_LOG=warn exec $BIN serve --mqtt 127.0.0.1:23883 --http 127.0.0.1:23880 > $W/$L.log 2>&1) &
P=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:23880/readyz >/dev/null && break; sleep 0.1; done
echo "$L load $(cut -d' ' -f1-3 /proc/loadavg)"
${FB:-/tmp/s19/base/fleetmq-bench} drive --mqtt 127.0.0.1:23883 --drivers $D --interval-ms $I --duration ${DUR:-8} --pid $P --json $W/$L.json > $W/$L.txt 2>&1
python3 -c "
import json;d=json.load(open('$W/$L.json'));l=d['latency_us']
print(f\"  sent/s {d['updates_per_sec']:.0f} lost {d.get('lost')} us/update {d['broker_cpu_us_per_update']:.2f} p50/p99 {l['p50']/1000:.2f}/{l['p99']/1000:.1f} ms\")"
kill -INT $P; wait $P
