#!/bin/bash
# perfrec.sh BIN LABEL DRIVERS: one node, no Redis, one MQTT watcher, DRIVERS x 100 ms; perf record of the broker for SECS (6) s at F (999) Hz from s 4 of driving; CG=1 adds dwarf call graphs (run as F=199 SECS=4 CG=1)
BIN=$1; L=$2; D=${3:-4000}; W=/tmp/s19/w
rm -rf $W/d-$L; mkdir -p $W/d-$L
(cd $W/d-$L && RUST_LOG=warn exec $BIN serve --mqtt 127.0.0.1:23883 --http 127.0.0.1:23880 > $W/$L.log 2>&1) &
P=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:23880/readyz >/dev/null && break; sleep 0.1; done
$FB drive --mqtt 127.0.0.1:23883 --drivers $D --interval-ms 100 --duration 12 --pid $P --json $W/$L.json > $W/$L.txt 2>&1 &
DP=$!
sleep 4
perf record -F ${F:-999} ${CG:+--call-graph dwarf,16384} -o /tmp/s20/$L.data -p $P -- sleep ${SECS:-6} 2>/dev/null
wait $DP
kill -INT $P; wait $P
perf report -i /tmp/s20/$L.data --no-children --sort sym --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -70 > /tmp/s20/$L.top
