#!/bin/bash
# Session 22: what a connect costs a cluster. A fresh redis-server and NODES (3) nodes with
# --cluster (NODES=1: one node without it, same Redis); `connections` opens COUNT (10,000)
# idle MQTT v5 clients (clean start, no expiry) on n1 and closes them; each node's and
# redis-server's CPU over it per connection (connect and disconnect), and the connect rate.
# Usage: BIN=path/to/fleetmq FB=path/to/fleetmq-bench LABEL=x [NODES=1] bash connects.sh
B=${B:-/tmp/s22}
NODES=${NODES:-3}
mkdir -p $B
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
redis-server --port 26800 --bind 127.0.0.1 --save '' --appendonly no > $B/redis-c.log 2>&1 &
rp=$!
for i in $(seq 50); do redis-cli -p 26800 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
pids=()
for n in $(seq $NODES); do
  cl=; [ $NODES -gt 1 ] && cl="--cluster --node-id n$n"
  (cd $B && RUST_LOG=warn exec $BIN serve $cl --redis redis://127.0.0.1:26800 \
     --mqtt 127.0.0.1:2230$n --http 127.0.0.1:2240$n > $B/$LABEL-n$n.log 2>&1) &
  pids+=($!)
done
for n in $(seq $NODES); do for i in $(seq 100); do curl -sf http://127.0.0.1:2240$n/readyz >/dev/null && break; sleep 0.1; done; done
sleep 2
t0=(); for p in ${pids[@]}; do t0+=($(ticks $p)); done; r0=$(ticks $rp)
COUNT=${COUNT:-10000}
$FB connections --mqtt 127.0.0.1:22301 --count $COUNT --json $B/$LABEL-conn.json > $B/$LABEL-conn.txt 2>&1
# The nodes may still be ending the sessions: wait until their CPU stops moving.
sum() { local s=0; for p in ${pids[@]}; do s=$((s + $(ticks $p))); done; echo $s; }
prev=-1; for i in $(seq 50); do cur=$(sum); [ "$cur" = "$prev" ] && break; prev=$cur; sleep 0.3; done
per=; for i in ${!pids[@]}; do per="$per n$((i+1)) $(( ($(ticks ${pids[$i]}) - ${t0[$i]}) * 10000 / COUNT ))"; done
rate=$(python3 -c "import json;d=json.load(open('$B/$LABEL-conn.json'));print(round(d.get('connect_per_sec', 0)))" 2>/dev/null)
echo "$LABEL: µs per connection:$per  redis $(( ($(ticks $rp) - r0) * 10000 / COUNT ))  connects/s $rate"
kill ${pids[@]}; wait ${pids[@]} 2>/dev/null
kill $rp; wait $rp 2>/dev/null
