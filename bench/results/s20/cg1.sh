#!/bin/bash
# cg1.sh BIN NAME: the broker under callgrind, no Redis, instrumented while drive runs (DRIVERS x INTERVAL ms x DURATION s, one MQTT watcher)
BIN=$1; NAME=$2; W=/tmp/s20/cg; MP=27993; HP=27990
rm -rf $W/data; mkdir -p $W/data
(cd $W/data && RUST_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$W/cg.$NAME.out $BIN serve --mqtt 127.0.0.1:$MP --http 127.0.0.1:$HP > $W/cg.$NAME.log 2>&1) &
VP=$!
for i in $(seq 600); do curl -sf http://127.0.0.1:$HP/readyz >/dev/null && break; sleep 0.2; done
callgrind_control -i on $VP >/dev/null
$FB drive --mqtt 127.0.0.1:$MP --drivers ${DRIVERS:-1000} --interval-ms ${INTERVAL:-1000} --duration ${DURATION:-20} --json $W/cg.$NAME.json > $W/cg.$NAME.txt 2>&1
callgrind_control -i off $VP >/dev/null
kill -INT $VP; wait $VP
N=$(python3 -c "import json;print(json.load(open('$W/cg.$NAME.json'))['updates_sent'])")
T=$(callgrind_annotate $W/cg.$NAME.out 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$NAME: updates $N, Ir total $T, Ir/update $((T / N))"
