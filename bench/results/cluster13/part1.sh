#!/bin/bash
# Issue 13 bench, part 1: cross-node drive vs one node, alternating.
. /tmp/b13/common.sh
mkdir -p /tmp/b13/results
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
start_redis
start_node S 21100 21200
for n in 1 2 3; do start_node n$n 2110$n 2120$n cluster; done
curl -s http://127.0.0.1:21201/api/v1/cluster; echo
S=$(cat /tmp/b13/S.pid); N1=$(cat /tmp/b13/n1.pid); N2=$(cat /tmp/b13/n2.pid); N3=$(cat /tmp/b13/n3.pid)
R=$(cat /tmp/b13/redis.pid)
run() { # label drivers args...
  local label=$1; shift
  local r0=$(ticks $R)
  echo "=== $label  start $(date -u +%T)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@" --json /tmp/b13/results/$label.json > /tmp/b13/results/$label.txt 2> /tmp/b13/results/$label.err; echo "rc=$?"
  cat /tmp/b13/results/$label.txt; tail -c 300 /tmp/b13/results/$label.err | tr '\r' '\n' | tail -3
  echo "=== $label  end $(date -u +%T)  load: $(cut -d' ' -f1-3 /proc/loadavg)  redis CPU ticks: $(( $(ticks $R) - r0 ))"
}
COMMON="--interval-ms 1000 --duration 20 --watch riders=300"
for D in ${DRIVERS:-2000 10000}; do
  for round in 1 2; do
    run single-$D-r$round $FB drive --mqtt 127.0.0.1:21100 --ws ws://127.0.0.1:21200/ws \
        --drivers $D $COMMON --pid $S
    run cluster-$D-r$round $FB drive --mqtt 127.0.0.1:21101,127.0.0.1:21102,127.0.0.1:21103 \
        --ws ws://127.0.0.1:21202/ws,ws://127.0.0.1:21203/ws,ws://127.0.0.1:21201/ws \
        --drivers $D $COMMON --pid $N1,$N2,$N3
  done
done
for p in $S $N1 $N2 $N3; do grep VmRSS /proc/$p/status; done
