#!/usr/bin/env bash
# HTTP keep-alive vs MQTT ingest (issue 16): the same N drivers and fixes, once published over
# MQTT and once posted to POST /api/v1/vehicles/{id}/location, one MQTT watcher of vehicles/#,
# a fresh release broker for each run; prints the bench's table and the broker's CPU seconds.
# Usage: bench/http_vs_mqtt.sh [DRIVERS] [INTERVAL_MS...]   (default 2000 drivers, 1000 250)
set -euo pipefail
cd "$(dirname "$0")/.."
drivers=${1:-2000}; shift || true
intervals=("$@")
[ ${#intervals[@]} -eq 0 ] && intervals=(1000 250)
bin=${FLEETMQ:-target/release/fleetmq}
bench=${BENCH:-target/release/fleetmq-bench}
out=bench/results/http-vs-mqtt
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
for interval in "${intervals[@]}"; do
  for mode in mqtt http; do
    log=$(mktemp)
    "$bin" serve --mqtt 127.0.0.1:0 --http 127.0.0.1:0 --log json >"$log" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do grep -q "fleetmq listening" "$log" && break; sleep 0.1; done
    line=$(grep "fleetmq listening" "$log")
    mqtt=$(sed -E 's/.*mqtt=([^ ]+).*/\1/' <<<"$line")
    http=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
    extra=()
    [ "$mode" = http ] && extra=(--http "http://$http")
    cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    "$bench" drive --mqtt "$mqtt" --drivers "$drivers" --interval-ms "$interval" --duration 10 \
      --watch-mqtt --watchers 1 "${extra[@]}" --json "$out/$mode-$drivers-$interval.json"
    cpu1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    echo "broker CPU ($mode, $drivers drivers every $interval ms): $(( (cpu1 - cpu0) )) ticks of 1/$(getconf CLK_TCK) s"
    kill "$pid"; wait "$pid" || true; rm -f "$log"
  done
done
