#!/usr/bin/env bash
# Issue 15 watcher mixes, part 3: one run of `drive` against a fresh broker.
# Usage: run.sh BUILD ROW MODE [DURATION]
#   BUILD: directory holding fleetmq and fleetmq-bench (main's copy or this branch's target/release)
#   ROW:   1k (10,000 drivers x 2 Hz, riders=900,routes=90,fleet=10)
#          10k (9,900 drivers x 2.02 Hz, riders=9000,routes=900,fleet=100: fd limit 20,000)
#   MODE:  plain or batch
# Writes results/mix15/<label>.json (+ .txt with the table, the load average and both CPUs), or
# into $OUT when set (session 20: OUT=results/s20).
set -euo pipefail
BUILD=$1 ROW=$2 MODE=$3 DURATION=${4:-10}
LABEL=${LABEL:-$(basename "$BUILD")-$ROW-$MODE}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MQTT=$(free_port) HTTP=$(free_port)
"$BUILD/fleetmq" serve --mqtt 127.0.0.1:$MQTT --http 127.0.0.1:$HTTP >/tmp/mix15-broker-$LABEL.log 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; wait $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$HTTP/healthz >/dev/null 2>&1 && break; sleep 0.1; done
case $ROW in
  1k) ARGS=(--drivers 10000 --interval-ms 500 --watch riders=900,routes=90,fleet=10) ;;
  10k) ARGS=(--drivers 9900 --interval-ms 495 --watch riders=9000,routes=900,fleet=100) ;;
esac
[ "$MODE" = batch ] && ARGS+=(--batch)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/time -f 'bench: %U user %S sys %e wall %M KB' "$BUILD/fleetmq-bench" drive \
  --mqtt 127.0.0.1:$MQTT --ws ws://127.0.0.1:$HTTP/ws --duration "$DURATION" --pid $BROKER \
  "${ARGS[@]}" --json "$OUT/$LABEL.json" >"$OUT/$LABEL.txt" 2>&1 || true
echo "load before: $LOAD0 after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$LABEL.txt"
grep -E "VmHWM|VmRSS" /proc/$BROKER/status >>"$OUT/$LABEL.txt" || true
tail -25 "$OUT/$LABEL.txt"
