#!/bin/bash
# cg.sh BIN_DIR NAME: broker under callgrind, instrumented only while drive runs (200 drivers x 500 ms x 10 s, one MQTT watcher)
B=$1; NAME=$2; MP=27893; HP=27890
rm -rf /tmp/s8/cgdata; mkdir -p /tmp/s8/cgdata
(cd /tmp/s8/cgdata && RUST_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/s8/cg.$NAME.out $B/fleetmq serve --mqtt 127.0.0.1:$MP --http 127.0.0.1:$HP > /tmp/s8/cg.$NAME.log 2>&1) &
VP=$!
for i in $(seq 600); do curl -sf http://127.0.0.1:$HP/readyz >/dev/null && break; sleep 0.2; done
callgrind_control -i on $VP >/dev/null
/tmp/s8bin/base/fleetmq-bench drive --mqtt 127.0.0.1:$MP --drivers 200 --interval-ms 500 --duration 10 --json /tmp/s8/cg.$NAME.json > /tmp/s8/cg.$NAME.txt 2>&1
callgrind_control -i off $VP >/dev/null
kill -INT $VP; wait $VP
N=$(python3 -c "import json;print(json.load(open('/tmp/s8/cg.$NAME.json'))['updates_sent'])")
IR=$(callgrind_annotate /tmp/s8/cg.$NAME.out* 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$NAME: updates $N Ir $IR Ir/update $((IR / N))"
