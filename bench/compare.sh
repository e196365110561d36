#!/usr/bin/env bash
# Side-by-side: fleetmq, Debian's Mosquitto and (if installed in bench/.tools) rumqttd, each on a
# free loopback port with equivalent settings (anonymous, no persistence, QoS 0 queue 1000),
# measured in turn with the same fleetmq-bench workloads. Prints one table with ratios; raw JSON
# goes to $OUT (default bench/results).
#
#   bench/compare.sh                         # full run, ~3 min
#   DURATION=3 COUNTS="1000" bench/compare.sh   # quick
#   BROKERS="fleetmq mosquitto" bench/compare.sh
#   FLEETMQ=/path/to/fleetmq SKIP_BUILD=1 bench/compare.sh   # a broker built elsewhere
#
# Workloads: QoS 0, 64-byte payload, fan-in 16 publishers -> 1 subscriber and fan-out 1 -> 16,
# $DURATION s each, flooding (as fast as TCP allows) and paced at $RATE deliveries/s (default
# 50,000: within every peer's capacity here); `connections` for each count in $COUNTS (idle MQTT
# 3.1.1 clients).
# Every client speaks MQTT 3.1.1, the version all three brokers serve on one listener.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
OUT=${OUT:-$ROOT/bench/results}
DURATION=${DURATION:-10}
COUNTS=${COUNTS:-"5000 18000"}
RATE=${RATE:-50000}
BROKERS=${BROKERS:-"fleetmq mosquitto rumqttd"}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
RUMQTTD=${RUMQTTD:-$ROOT/bench/.tools/bin/rumqttd}
SKIP_BUILD=${SKIP_BUILD:-0}

if [[ $SKIP_BUILD != 1 ]]; then
    cargo build --release -p fleetmq -p fleetmq-bench
fi
BENCH=${BENCH:-$CARGO_TARGET_DIR/release/fleetmq-bench}
FLEETMQ=${FLEETMQ:-$CARGO_TARGET_DIR/release/fleetmq}
mkdir -p "$OUT"
WORK=$(mktemp -d)
# Brokers inherit the hard descriptor limit as their soft one (Mosquitto does not raise its own).
ulimit -n "$(ulimit -Hn)"

BROKER_PID=
stop_broker() {
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=
}
cleanup() { stop_broker; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$BROKER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_broker() { # name port -> sets BROKER_PID
    local name=$1 port=$2
    case $name in
    fleetmq)
        "$FLEETMQ" serve --mqtt "127.0.0.1:$port" --http "127.0.0.1:$(free_port)" --log json \
            >"$WORK/fleetmq.out" 2>"$WORK/fleetmq.err" &
        ;;
    mosquitto)
        cat >"$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000
log_dest none
EOF
        "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.out" 2>&1 &
        ;;
    rumqttd)
        cat >"$WORK/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
        "$RUMQTTD" -q --config "$WORK/rumqttd.toml" >"$WORK/rumqttd.out" 2>&1 &
        ;;
    esac
    BROKER_PID=$!
    if ! wait_port "$port"; then
        echo "$name did not start; its output:" >&2
        cat "$WORK/$name".* >&2 || true
        return 1
    fi
}

run_broker() {
    local name=$1 port
    port=$(free_port)
    echo "=== $name on 127.0.0.1:$port" >&2
    start_broker "$name" "$port" || return 0
    local target=127.0.0.1:$port
    "$BENCH" throughput --mqtt "$target" --protocol 3.1.1 --qos 0 --size 64 \
        --publishers 16 --subscribers 1 --duration "$DURATION" --json "$OUT/$name-fanin.json" \
        --percentiles "$OUT/$name-fanin.csv" ||
        echo "$name fan-in failed" >&2
    "$BENCH" throughput --mqtt "$target" --protocol 3.1.1 --qos 0 --size 64 \
        --publishers 1 --subscribers 16 --duration "$DURATION" --json "$OUT/$name-fanout.json" \
        --percentiles "$OUT/$name-fanout.csv" ||
        echo "$name fan-out failed" >&2
    # Paced: the same shapes at a fixed offered load every broker can carry, so latency is the
    # broker's and not the queueing delay of a flood.
    "$BENCH" throughput --mqtt "$target" --protocol 3.1.1 --qos 0 --size 64 --rate "$RATE" \
        --publishers 16 --subscribers 1 --duration "$DURATION" --json "$OUT/$name-fanin-paced.json" \
        --percentiles "$OUT/$name-fanin-paced.csv" || echo "$name paced fan-in failed" >&2
    "$BENCH" throughput --mqtt "$target" --protocol 3.1.1 --qos 0 --size 64 --rate $((RATE / 16)) \
        --publishers 1 --subscribers 16 --duration "$DURATION" --json "$OUT/$name-fanout-paced.json" \
        --percentiles "$OUT/$name-fanout-paced.csv" || echo "$name paced fan-out failed" >&2
    for n in $COUNTS; do
        # A fresh broker per count, so the RSS baseline is an idle broker's.
        stop_broker
        port=$(free_port)
        start_broker "$name" "$port" || return 0
        "$BENCH" connections --mqtt "127.0.0.1:$port" --count "$n" --pid "$BROKER_PID" \
            --json "$OUT/$name-conn$n.json" || echo "$name connections $n failed" >&2
    done
    stop_broker
}

for b in $BROKERS; do
    if [[ $b == rumqttd && ! -x $RUMQTTD ]]; then
        echo "=== rumqttd skipped: $RUMQTTD not installed (cargo install rumqttd --root bench/.tools)" >&2
        continue
    fi
    run_broker "$b"
done

python3 "$ROOT/bench/table.py" "$OUT" $BROKERS --counts $COUNTS
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 "$ROOT/bench/plot.py" "$OUT" $BROKERS --out "$ROOT/bench/latency.png"
fi
