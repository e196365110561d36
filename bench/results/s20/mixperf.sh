#!/bin/bash
# mixperf.sh BUILD LABEL: row 1 plain (10,000 drivers x 2 Hz, riders=900,routes=90,fleet=10), perf record -F 499 of the broker for 5 s from s 4
BUILD=$1; L=$2; W=/tmp/s20/mp; mkdir -p $W
$BUILD/fleetmq serve --mqtt 127.0.0.1:24883 --http 127.0.0.1:24880 > $W/$L.log 2>&1 &
P=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:24880/healthz >/dev/null 2>&1 && break; sleep 0.1; done
$BUILD/fleetmq-bench drive --mqtt 127.0.0.1:24883 --ws ws://127.0.0.1:24880/ws --duration 12 --pid $P --drivers 10000 --interval-ms 500 --watch riders=900,routes=90,fleet=10 --json $W/$L.json > $W/$L.txt 2>&1 &
D=$!
sleep 7
perf record -F 499 ${CG:+--call-graph dwarf,16384} -o $W/$L.data -p $P -- sleep 5 2>/dev/null
wait $D; kill $P; wait $P 2>/dev/null
grep -E "latency p99 |µs/update" $W/$L.txt
perf report -i $W/$L.data --no-children --sort sym --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -50 > $W/$L.top
