#!/usr/bin/env bash
# Issue 14 bench (bench/RESULTS.md "Issue 14"): cross-node fan-out 1→16 on three cluster nodes
# against one plain node, same session, alternating; then the cost of the durable-session path
# (QoS 1 publish→PUBACK with and without a durable subscriber). Starts redis-server and the
# nodes on fixed loopback ports, records their pids, stops them at the end.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=target/release/fleetmq
BENCH=target/release/fleetmq-bench
OUT=bench/results/sessions14
WORK=$(mktemp -d)
DUR=${DUR:-5}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

redis-server --port 26479 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
REDIS=redis://127.0.0.1:26479
until redis-cli -p 26479 ping >/dev/null 2>&1; do sleep 0.1; done
node() { # name mqtt http [cluster flags...]
  local name=$1 mqtt=$2 http=$3; shift 3
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$OLDPWD/$BIN" serve --mqtt "127.0.0.1:$mqtt" --http "127.0.0.1:$http" "$@" \
      >"$WORK/$name.log" 2>&1) &
  PIDS+=($!)
  until (exec 3<>"/dev/tcp/127.0.0.1/$mqtt") 2>/dev/null; do sleep 0.1; done
}
node s 21300 21400 --redis "$REDIS"
node n1 21301 21401 --cluster --node-id n1 --redis "$REDIS"
node n2 21302 21402 --cluster --node-id n2 --redis "$REDIS"
node n3 21303 21403 --cluster --node-id n3 --redis "$REDIS"
until [ "$(curl -s http://127.0.0.1:21401/api/v1/cluster | grep -o '"id"' | wc -l)" = 3 ]; do sleep 0.2; done
SINGLE=127.0.0.1:21300
CLUSTER=127.0.0.1:21301,127.0.0.1:21302,127.0.0.1:21303

run() { # label args...
  local label=$1; shift
  echo "== $label (load $(cut -d' ' -f1 /proc/loadavg))"
  "$BENCH" throughput "$@" --json "$OUT/$label.json" | grep -E "clients|sent/s|received/s|delivered|latency p50|latency p99 |ack latency p50|ack latency p99 "
}
# PART=2: the runs added after the first session (flow-controlled flood, fixed-rate QoS 0,
# the plain flood beside the durable one).
if [ "${PART:-1}" = 2 ]; then
  for r in 1 2; do
    run "fanout-q1-flood-single-r$r" --mqtt $SINGLE --publishers 1 --subscribers 16 --qos 1 --duration "$DUR"
    run "fanout-q1-flood-cluster-r$r" --mqtt $CLUSTER --publishers 1 --subscribers 16 --qos 1 --duration "$DUR"
  done
  run "fanout-q0-rate-single-r1" --mqtt $SINGLE --publishers 1 --subscribers 16 --qos 0 --rate 10000 --duration "$DUR"
  run "fanout-q0-rate-cluster-r1" --mqtt $CLUSTER --publishers 1 --subscribers 16 --qos 0 --rate 10000 --duration "$DUR"
  run "durable-off-flood" --mqtt 127.0.0.1:21301,127.0.0.1:21302 --qos 1 --duration "$DUR"
  run "durable-on-flood2" --mqtt 127.0.0.1:21301,127.0.0.1:21302 --qos 1 --duration "$DUR" --session-expiry 30
  redis-cli -p 26479 info commandstats | grep -E "cmdstat_(xadd|xrange|xdel|hset|eval)"
  exit 0
fi
# 1. Fan-out 1→16: publisher on n1, 16 subscribers on n2 and n3 (8 each) vs all on one node.
for r in 1 2; do
  run "fanout-q0-single-r$r" --mqtt $SINGLE --publishers 1 --subscribers 16 --qos 0 --duration "$DUR"
  run "fanout-q0-cluster-r$r" --mqtt $CLUSTER --publishers 1 --subscribers 16 --qos 0 --duration "$DUR"
done
for r in 1 2; do
  run "fanout-q1-rate-single-r$r" --mqtt $SINGLE --publishers 1 --subscribers 16 --qos 1 --rate 2000 --duration "$DUR"
  run "fanout-q1-rate-cluster-r$r" --mqtt $CLUSTER --publishers 1 --subscribers 16 --qos 1 --rate 2000 --duration "$DUR"
done
# 2. The durable path: 1 QoS 1 publisher on n1, 1 subscriber on n2, 500 msg/s, plain sessions
#    first (no durable session in the cluster yet), then durable ones.
for r in 1 2; do
  run "durable-off-r$r" --mqtt 127.0.0.1:21301,127.0.0.1:21302 --qos 1 --rate 500 --duration "$DUR"
done
for r in 1 2; do
  run "durable-on-r$r" --mqtt 127.0.0.1:21301,127.0.0.1:21302 --qos 1 --rate 500 --duration "$DUR" --session-expiry 30
done
# Flood with a durable subscriber: how fast the Redis path goes.
run "durable-on-flood" --mqtt 127.0.0.1:21301,127.0.0.1:21302 --qos 1 --duration "$DUR" --session-expiry 30
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(uname -r), $(redis-server --version | cut -d' ' -f3)"
