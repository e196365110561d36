#!/bin/bash
# cg.sh BIN_DIR NAME [FB]: session 8's cg.sh (s8/cg.sh) with the state writer on: the broker
# under callgrind with --redis on a redis-server of its own, instrumented only while drive
# runs (200 drivers x 500 ms x 10 s, one MQTT watcher). FB: the fleetmq-bench binary
# (default BIN_DIR/fleetmq-bench). Prints Ir per update sent; callgrind counts instructions,
# so the figure repeats whatever else the box is doing. Session 13 added DRIVERS, INTERVAL and
# CONCURRENCY (defaults: session 12's run, 200 x 500 ms, the bench's own concurrency), session
# 14 DURATION (seconds of driving, default 10).
B=$1; NAME=$2; FB=${3:-$1/fleetmq-bench}; MP=27893; HP=27890; RP=27891; W=/tmp/s12cg
rm -rf $W/data; mkdir -p $W/data
redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly no > $W/redis.$NAME.log 2>&1 &
RS=$!
for i in $(seq 50); do redis-cli -p $RP ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
(cd $W/data && RUST_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$W/cg.$NAME.out $B/fleetmq serve --redis redis://127.0.0.1:$RP --mqtt 127.0.0.1:$MP --http 127.0.0.1:$HP > $W/cg.$NAME.log 2>&1) &
VP=$!
for i in $(seq 600); do curl -sf http://127.0.0.1:$HP/readyz >/dev/null && break; sleep 0.2; done
callgrind_control -i on $VP >/dev/null
$FB drive --mqtt 127.0.0.1:$MP --drivers ${DRIVERS:-200} --interval-ms ${INTERVAL:-500} --duration ${DURATION:-10} \
   ${CONCURRENCY:+--concurrency $CONCURRENCY} --json $W/cg.$NAME.json > $W/cg.$NAME.txt 2>&1
# The writer's last rounds inside the measurement: wait (30 s at most) until every update sent
# is in a track stream.
N=$(python3 -c "import json;print(json.load(open('$W/cg.$NAME.json'))['updates_sent'])")
for i in $(seq 300); do
  X=$(redis-cli -p $RP info commandstats | tr -d '\r' | sed -n 's/^cmdstat_xadd:calls=\([0-9]*\),.*/\1/p')
  [ "${X:-0}" -ge "$N" ] && break; sleep 0.1
done
echo "$NAME: XADD calls ${X:-0} of $N updates"
callgrind_control -i off $VP >/dev/null
# One tracker snapshot, to see what the writer stores per update.
K=$(redis-cli -p $RP --scan --pattern "fleetmq:vehicle:*" | head -1)
redis-cli -p $RP hget "$K" tracker > $W/tracker.$NAME.json
kill -INT $VP; wait $VP; kill $RS; wait $RS 2>/dev/null
IR=$(callgrind_annotate $W/cg.$NAME.out* 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "$NAME: updates $N Ir $IR Ir/update $((IR / N))"
