#!/bin/bash
# single.sh: two single nodes side by side, each on a redis-server of its own: A = $A (before),
# B = $B_BIN (after); ROUNDS rounds of 10,000 drivers x 1 Hz, 300 WebSocket riders, DURATION s
# each (default 60), A then B per round. Every process started is in $W/pids.
W=${W:-/tmp/s12single}; FB=${FB:?fleetmq-bench}; A=${A:?before}; B_BIN=${B_BIN:?after}
mkdir -p $W/results; : > $W/pids
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for n in a b; do
  rp=$([ $n = a ] && echo 26401 || echo 26402)
  redis-server --port $rp --bind 127.0.0.1 --save '' --appendonly no > $W/r$n.log 2>&1 &
  echo "r$n $!" >> $W/pids; echo $! > $W/r$n.pid
  for i in $(seq 50); do redis-cli -p $rp ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  bin=$([ $n = a ] && echo $A || echo $B_BIN); mp=$([ $n = a ] && echo 21601 || echo 21602)
  hp=$([ $n = a ] && echo 21701 || echo 21702)
  mkdir -p $W/$n
  (cd $W/$n && RUST_LOG=warn exec $bin serve --redis redis://127.0.0.1:$rp --mqtt 127.0.0.1:$mp --http 127.0.0.1:$hp > $W/$n.log 2>&1) &
  echo "$n $!" >> $W/pids; echo $! > $W/$n.pid
  for i in $(seq 100); do curl -sf http://127.0.0.1:$hp/readyz >/dev/null && break; sleep 0.1; done
done
for round in ${ROUNDS:-1 2}; do
  for n in a b; do
    sleep ${GAP:-10}
    mp=$([ $n = a ] && echo 21601 || echo 21602); hp=$([ $n = a ] && echo 21701 || echo 21702)
    r=$(cat $W/r$n.pid); r0=$(ticks $r)
    echo "=== $n-r$round start $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    $FB drive --mqtt 127.0.0.1:$mp --ws ws://127.0.0.1:$hp/ws --drivers 10000 --interval-ms 1000 \
      --duration ${DURATION:-60} --watch riders=300 --pid $(cat $W/$n.pid) --json $W/results/$n-r$round.json \
      2>/dev/null | grep -E "lost|latency p(50|99) |µs/update"
    echo "=== $n-r$round end $(date -u +%T) redis CPU ticks: $(( $(ticks $r) - r0 ))"
  done
done
while read n p; do kill $p; done < $W/pids
