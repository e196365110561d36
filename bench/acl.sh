#!/usr/bin/env bash
# Cost of the per-message ACL check (issue 11): fan-in 16 -> 1, QoS 0, 64-byte payload, one `#`
# subscriber, against fleetmq without an ACL and with an ACL of 50 deny rules (none of which
# matches the bench's topics, so every message is checked and delivered), alternating, in one run.
#
#   bench/acl.sh                               # 3 repeats of 10 s each per setting
#   REPEATS=2 DURATION=5 bench/acl.sh
#   FLEETMQ=/path/to/fleetmq SKIP_BUILD=1 bench/acl.sh
#
# Prints one line per run and the mean ratio; raw JSON goes to $OUT (default bench/results).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/bench/results}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
RULES=${RULES:-50}
SKIP_BUILD=${SKIP_BUILD:-0}
if [[ $SKIP_BUILD != 1 ]]; then
    cargo build --release -p fleetmq -p fleetmq-bench
fi
BENCH=${BENCH:-$CARGO_TARGET_DIR/release/fleetmq-bench}
FLEETMQ=${FLEETMQ:-$CARGO_TARGET_DIR/release/fleetmq}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PID=
stop() {
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=
}
trap 'stop; rm -rf "$WORK"' EXIT

for i in $(seq 0 $((RULES - 1))); do
    printf '[[rule]]\ntopic = "restricted/%d/+/secret"\naccess = "deny"\n\n' "$i"
done >"$WORK/acl.toml"

run() { # label, extra serve flags...
    local label=$1
    shift
    # One output file per run: a new broker's line, never the previous one's.
    local out="$WORK/out-$label-$rep"
    "$FLEETMQ" serve --mqtt 127.0.0.1:0 --http 127.0.0.1:0 --log json "$@" \
        >"$out" 2>"$WORK/err" &
    PID=$!
    local line=
    for _ in $(seq 300); do
        line=$(grep -s -m1 '^fleetmq listening' "$out" || true)
        [[ -n $line ]] && break
        sleep 0.1
    done
    local addr=${line#*mqtt=}
    addr=${addr%% *}
    "$BENCH" throughput --mqtt "$addr" --protocol 3.1.1 --qos 0 --size 64 --publishers 16 \
        --subscribers 1 --filter '#' --duration "$DURATION" --json "$OUT/acl-$label-$rep.json" >/dev/null 2>"$WORK/bench.err" ||
        { cat "$WORK/bench.err" >&2; exit 1; }
    stop
    python3 - "$OUT/acl-$label-$rep.json" "$label" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>8}: delivered {f['received_per_sec']:>10,.0f} msg/s, published "
      f"{f['sent_per_sec']:>10,.0f} msg/s, p50 {f['latency_us']['p50'] / 1000:,.0f} ms")
PY
}

for rep in $(seq "$REPEATS"); do
    run none
    run "acl$RULES" --acl "$WORK/acl.toml"
done
python3 - "$OUT" "$REPEATS" "$RULES" <<'PY'
import json, sys
out, repeats, rules = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def mean(label):
    xs = [json.load(open(f"{out}/acl-{label}-{r}.json"))["received_per_sec"] for r in range(1, repeats + 1)]
    return sum(xs) / len(xs)
none, acl = mean("none"), mean(f"acl{rules}")
print(f"mean delivered: no ACL {none:,.0f} msg/s, {rules} rules {acl:,.0f} msg/s, ratio {acl / none:.3f}")
PY
