#!/usr/bin/env bash
# A 2 s check of the durable path on two fresh cluster nodes (bench/RESULTS.md "Issue 14"):
# a QoS 1 publisher on n1, a durable subscriber on n2, RATE msg/s (0: flood), then the Redis
# command counts (every message appended, marked sent and deleted once).
set -u
cd "$(dirname "$0")/../../.."
ROOT=$PWD; W=$(mktemp -d); P=()
redis-server --port 26579 --bind 127.0.0.1 --save '' --appendonly no --dir $W >/dev/null & P+=($!)
until redis-cli -p 26579 ping >/dev/null 2>&1; do sleep 0.1; done
for n in 1 2; do (cd $W && exec "$ROOT/target/release/fleetmq" serve --mqtt 127.0.0.1:2160$n --http 127.0.0.1:2170$n --cluster --node-id n$n --redis redis://127.0.0.1:26579 > $W/n$n.log 2>&1) & P+=($!); done
until [ "$(curl -s http://127.0.0.1:21701/api/v1/cluster | grep -o '"id"' | wc -l)" = 2 ]; do sleep 0.2; done
target/release/fleetmq-bench throughput --mqtt 127.0.0.1:21601,127.0.0.1:21602 --qos 1 --rate ${RATE:-500} --duration 2 --session-expiry 30 | grep -E "sent/s|delivered|ack latency p50"
redis-cli -p 26579 info commandstats | grep -E "cmdstat_(xadd|xrange|xdel|hset|hdel)" | cut -d, -f1
for p in "${P[@]}"; do kill $p; done; wait; rm -rf $W
