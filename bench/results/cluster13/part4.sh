#!/bin/bash
# Issue 13 bench, part 4 (cpu13, CPU per update part 2): part3.sh without the 1-worker
# cluster, each setup on a redis-server of its own: R1 serves the single node S (this branch's
# build), R2 cluster "before" (b1-b3, a build of main), R3 cluster "after" (a1-a3, this branch).
# Each run resets its redis's INFO commandstats first and prints them after. Per size D, per
# round: single, before, after. Every process started is recorded in $B/pids and stopped by
# "while read n p; do kill $p; done < $B/pids". GAP (seconds, default 0; session 9 used 15):
# a pause before each run, so that the previous run's end (10,000 drivers disconnecting:
# offline states, events, lease releases) is over before the next starts. DURATION: seconds
# of driving per run (default 20; session 10 used 150, past the 120 s ETA window). SINGLE0=1
# (session 10): also a single node S0 of the "before" build on R0, run first in each round.
B=${B:-/tmp/b13d}
BEFORE=${BEFORE:-$B/bin-before/fleetmq}
AFTER=${AFTER:-$B/bin-after/fleetmq}
FB=${FB:-$B/bin-after/fleetmq-bench}
mkdir -p $B/results
: > $B/pids
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
start_redis() { # name port
  redis-server --port $2 --bind 127.0.0.1 --save '' --appendonly no --daemonize no > $B/$1.log 2>&1 &
  echo $! > $B/$1.pid; echo "$1 $!" >> $B/pids
  for i in $(seq 50); do redis-cli -p $2 ping 2>/dev/null | grep -q PONG && return; sleep 0.1; done
}
start_node() { # name binary redisport mqttport httpport [cluster]
  local name=$1 bin=$2 rp=$3 mp=$4 hp=$5 cl=$6
  mkdir -p $B/$name
  if [ -n "$cl" ]; then
    (cd $B/$name && RUST_LOG=warn TOKIO_WORKER_THREADS=${WORKERS:-2} exec $bin serve --cluster --node-id $name --redis redis://127.0.0.1:$rp \
       --mqtt 127.0.0.1:$mp --http 127.0.0.1:$hp > $B/$name.log 2>&1) &
  else
    (cd $B/$name && RUST_LOG=warn exec $bin serve --redis redis://127.0.0.1:$rp \
       --mqtt 127.0.0.1:$mp --http 127.0.0.1:$hp > $B/$name.log 2>&1) &
  fi
  echo $! > $B/$name.pid; echo "$name $!" >> $B/pids
  for i in $(seq 100); do curl -sf http://127.0.0.1:$hp/readyz >/dev/null && return; sleep 0.1; done
  echo "node $name not ready"; tail -5 $B/$name.log
}
[ -n "$SINGLE0" ] && start_redis r0 26390
start_redis r1 26391
start_redis r2 26392
start_redis r3 26393
[ -n "$SINGLE0" ] && start_node S0 $BEFORE 26390 21399 21499
start_node S $AFTER 26391 21400 21500
for n in 1 2 3; do start_node b$n $BEFORE 26392 2141$n 2151$n cluster; done
for n in 1 2 3; do start_node a$n $AFTER 26393 2142$n 2152$n cluster; done
pid() { cat $B/$1.pid; }
R0=$([ -n "$SINGLE0" ] && pid r0); R1=$(pid r1); R2=$(pid r2); R3=$(pid r3)
port_of() { case $1 in "$R0") echo 26390;; $R1) echo 26391;; $R2) echo 26392;; $R3) echo 26393;; esac; }
run() { # label redis-pid args...
  sleep ${GAP:-0}
  local label=$1 r=$2; shift 2
  redis-cli -p $(port_of $r) config resetstat > /dev/null
  local r0=$(ticks $r)
  echo "=== $label  start $(date -u +%T)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@" --json $B/results/$label.json > $B/results/$label.txt 2> $B/results/$label.err; echo "rc=$?"
  cat $B/results/$label.txt; tail -c 300 $B/results/$label.err | tr '\r' '\n' | tail -2
  echo "=== $label  end $(date -u +%T)  load: $(cut -d' ' -f1-3 /proc/loadavg)  redis CPU ticks: $(( $(ticks $r) - r0 ))"
  redis-cli -p $(port_of $r) info commandstats | grep -E 'publish|evalsha|hset|geoadd|xadd' | tr -d '\r' | sed "s/^/  $label /"
}
COMMON="--interval-ms 1000 --duration ${DURATION:-20} --watch riders=300"
cluster() { # label redis-pid mqtt-base http-base n1 n2 n3
  local label=$1 r=$2 m=$3 h=$4
  run $label $r $FB drive --mqtt 127.0.0.1:${m}1,127.0.0.1:${m}2,127.0.0.1:${m}3 \
      --ws ws://127.0.0.1:${h}2/ws,ws://127.0.0.1:${h}3/ws,ws://127.0.0.1:${h}1/ws \
      --drivers $D $COMMON --pid $(pid $5),$(pid $6),$(pid $7)
}
for D in ${DRIVERS:-10000 5000}; do
  for round in ${ROUNDS:-1 2}; do
    [ -n "$SINGLE0" ] && run single0-$D-r$round $R0 $FB drive --mqtt 127.0.0.1:21399 \
        --ws ws://127.0.0.1:21499/ws --drivers $D $COMMON --pid $(pid S0)
    run single-$D-r$round $R1 $FB drive --mqtt 127.0.0.1:21400 --ws ws://127.0.0.1:21500/ws \
        --drivers $D $COMMON --pid $(pid S)
    cluster before-$D-r$round $R2 2141 2151 b1 b2 b3
    cluster after-$D-r$round $R3 2142 2152 a1 a2 a3
  done
done
for n in S b1 b2 b3 a1 a2 a3; do echo "$n $(grep VmRSS /proc/$(pid $n)/status)"; done
for hp in 21511 21521; do echo "node on $hp:"; curl -s http://127.0.0.1:$hp/metrics | grep -E '^fleetmq_cluster_(messages|dropped|lease_renew)'; done
for rp in 26391 26392 26393; do echo "redis $rp:"; redis-cli -p $rp info commandstats | grep -E 'publish|evalsha|hset|geoadd|xadd'; done
