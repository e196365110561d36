#!/usr/bin/env bash
# Session 23: one watcher-mix run of issue 15 against a fresh broker on free ports.
# Usage: mix.sh FLEETMQ BENCH ROW MODE LABEL [DURATION]   (env BROKER_ARGS: extra `serve` flags;
#        PERF=1: `perf record -g` of the broker for 5 s from s 5 of driving into $OUT/LABEL.data)
#   ROW: 1k (10,000 drivers x 2 Hz, riders=900,routes=90,fleet=10)
#        10k (9,900 drivers x 2.02 Hz, riders=9000,routes=900,fleet=100: fd limit 20,000)
#   MODE: plain or batch
set -euo pipefail
FLEETMQ=$1 BENCH=$2 ROW=$3 MODE=$4 LABEL=$5 DURATION=${6:-10}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MQTT=$(free_port) HTTP=$(free_port)
# shellcheck disable=SC2086
"$FLEETMQ" serve --mqtt 127.0.0.1:$MQTT --http 127.0.0.1:$HTTP ${BROKER_ARGS:-} >"$OUT/$LABEL.broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; wait $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$HTTP/healthz >/dev/null 2>&1 && break; sleep 0.1; done
case $ROW in
  1k) ARGS=(--drivers 10000 --interval-ms 500 --watch riders=900,routes=90,fleet=10) ;;
  10k) ARGS=(--drivers 9900 --interval-ms 495 --watch riders=9000,routes=900,fleet=100) ;;
esac
[ "$MODE" = batch ] && ARGS+=(--batch)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/time -f 'bench: %U user %S sys %e wall %M KB' "$BENCH" drive \
  --mqtt 127.0.0.1:$MQTT --ws ws://127.0.0.1:$HTTP/ws --duration "$DURATION" --pid $BROKER \
  "${ARGS[@]}" --json "$OUT/$LABEL.json" >"$OUT/$LABEL.txt" 2>&1 &
D=$!
if [ -n "${PERF:-}" ]; then
  sleep 9  # connects (~3 s) then 5 s of driving
  perf record -F 499 -g -o "$OUT/$LABEL.data" -p $BROKER -- sleep 5 >/dev/null 2>&1 || true
fi
wait $D || true
echo "load before: $LOAD0 after: $(cut -d' ' -f1-3 /proc/loadavg); broker args: ${BROKER_ARGS:-}" >>"$OUT/$LABEL.txt"
grep -E "VmHWM" /proc/$BROKER/status >>"$OUT/$LABEL.txt" || true
grep -E "updates/s|lost|latency p50|latency p99 |from s|µs/update|bench:|load before|VmHWM" "$OUT/$LABEL.txt"
