#!/bin/bash
# New build only: 3 cluster nodes, one drive, then each node's held/at-once counters.
B=/tmp/b9d; mkdir -p $B; : > $B/pids
BIN=${BIN:-/tmp/b9/new/fleetmq}; FB=/tmp/b9/new/fleetmq-bench
redis-server --port 26399 --bind 127.0.0.1 --save '' --appendonly no > $B/r.log 2>&1 & echo "r $!" >> $B/pids
for i in $(seq 50); do redis-cli -p 26399 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
for n in 1 2 3; do
  mkdir -p $B/n$n
  (cd $B/n$n && RUST_LOG=warn TOKIO_WORKER_THREADS=${WORKERS:-2} exec $BIN serve --cluster --node-id n$n --redis redis://127.0.0.1:26399 --mqtt 127.0.0.1:2143$n --http 127.0.0.1:2153$n > $B/n$n.log 2>&1) &
  echo "n$n $!" >> $B/pids; eval P$n=$!
  for i in $(seq 100); do curl -sf http://127.0.0.1:2153$n/readyz >/dev/null && break; sleep 0.1; done
done
for r in ${ROUNDS:-1}; do
$FB drive --mqtt 127.0.0.1:21431,127.0.0.1:21432,127.0.0.1:21433 --ws ws://127.0.0.1:21532/ws,ws://127.0.0.1:21533/ws,ws://127.0.0.1:21531/ws \
  --drivers ${DRIVERS:-10000} --interval-ms 1000 --duration ${DUR:-20} --watch riders=300 --pid $P1,$P2,$P3 2>/dev/null | grep -E "µs/update|p99 "
for n in 1 2 3; do curl -s http://127.0.0.1:2153$n/metrics | grep -E "^fleetmq_cluster_states" | tr '\n' ' '; echo; done
done
while read n p; do kill $p; done < $B/pids
