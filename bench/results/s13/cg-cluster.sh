#!/bin/bash
# cg-cluster.sh BIN NAME [FB]: s12/cg.sh for a 3-node cluster: the three nodes (--cluster, one
# redis-server) under callgrind, instrumented only while `drive` runs (200 drivers x 500 ms x
# 10 s over the three nodes, one MQTT watcher of every state on the first node) and until every
# update sent is in a track stream. Prints each node's Ir and the sum per update sent, to set
# beside cg.sh's single node: instruction counts do not depend on how busy the box is, so the
# ratio is the cluster's extra work, without the cost of three processes sharing two cores.
# Measured until every update is written AND received by both other nodes: a node under
# valgrind lags, and stopping at the writes alone cut off a varying part of the receiving.
# Session 14 added DURATION (seconds of driving, default 10) and W (the work directory).
BIN=$1; NAME=$2; FB=${3:-$(dirname $1)/fleetmq-bench}; RP=27981; W=${W:-/tmp/s13cg}
rm -rf $W/$NAME; mkdir -p $W/$NAME
redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly no > $W/$NAME/redis.log 2>&1 &
RS=$!
for i in $(seq 50); do redis-cli -p $RP ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
VP=()
for n in 1 2 3; do
  (cd $W/$NAME && RUST_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no \
     --callgrind-out-file=$W/$NAME/cg.n$n.out $BIN serve --cluster --node-id n$n \
     --redis redis://127.0.0.1:$RP --mqtt 127.0.0.1:2799$n --http 127.0.0.1:2789$n > $W/$NAME/n$n.log 2>&1) &
  VP+=($!)
done
for n in 1 2 3; do for i in $(seq 600); do curl -sf http://127.0.0.1:2789$n/readyz >/dev/null && break; sleep 0.2; done; done
for p in ${VP[@]}; do callgrind_control -i on $p >/dev/null; done
$FB drive --mqtt 127.0.0.1:27991,127.0.0.1:27992,127.0.0.1:27993 --drivers ${DRIVERS:-200} --interval-ms ${INTERVAL:-500} --concurrency 4 \
   --duration ${DURATION:-10} --json $W/$NAME/drive.json > $W/$NAME/drive.txt 2>&1
N=$(python3 -c "import json;print(json.load(open('$W/$NAME/drive.json'))['updates_sent'])")
for i in $(seq 300); do
  X=$(redis-cli -p $RP info commandstats | tr -d '\r' | sed -n 's/^cmdstat_xadd:calls=\([0-9]*\),.*/\1/p')
  [ "${X:-0}" -ge "$N" ] && break; sleep 0.1
done
echo "$NAME: XADD calls ${X:-0} of $N updates"
# ... and until each node has taken in the other nodes' states: the sum of
# fleetmq_cluster_states_received_total over the nodes reaches 2 N (each state is received by
# the two nodes that did not process it), 120 s at most (valgrind'd nodes lag behind).
received() {
  for n in 1 2 3; do curl -s http://127.0.0.1:2789$n/metrics; done |
    awk '/^fleetmq_cluster_states_received_total/ {s += $2} END {print s + 0}'
}
for i in $(seq 600); do R=$(received); [ "$R" -ge $((2 * N)) ] && break; sleep 0.2; done
echo "$NAME: states received $R of $((2 * N))"
for p in ${VP[@]}; do callgrind_control -i off $p >/dev/null; done
for p in ${VP[@]}; do kill -INT $p; done; wait ${VP[@]}; kill $RS; wait $RS 2>/dev/null
T=0
for n in 1 2 3; do
  IR=$(callgrind_annotate $W/$NAME/cg.n$n.out* 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
  echo "$NAME: n$n Ir $IR"; T=$((T + IR))
done
echo "$NAME: updates $N Ir $T Ir/update $((T / N))"
