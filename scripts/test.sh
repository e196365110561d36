#!/usr/bin/env bash
# The test command (README "Test"): formatting, lints, the Rust test suites, then the Python
# end-to-end suites (paho-mqtt, mosquitto clients) against the built debug `fleetmq` binary.
# Every step runs even when an earlier one fails; the exit code is non-zero if any failed.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export FLEETMQ_BIN="${FLEETMQ_BIN:-$TARGET_DIR/debug/fleetmq}"

failed=()
step() {
    local name="$1"
    shift
    echo "==> $name: $*"
    local start=$SECONDS
    if "$@"; then
        echo "==> $name: ok ($((SECONDS - start)) s)"
    else
        echo "==> $name: FAILED ($((SECONDS - start)) s)"
        failed+=("$name")
    fi
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests spawn the real binary, so build it first. The same command as
# scripts/setup.sh's, so that after setup this finds nothing to do: `cargo build -p fleetmq`
# unifies the dependencies' features differently from the whole workspace with its dev-dependencies,
# so it rebuilt most of the dependency graph (and relinked target/debug/fleetmq) for nothing.
step build cargo build --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
    step rust-tests cargo nextest run --workspace --no-fail-fast
    step doc-tests cargo test --workspace --doc
else
    step rust-tests cargo test --workspace --no-fail-fast
fi

# pytest exits 5 when it collects no test: that fails the step too.
# FLEETMQ_E2E_SLOW=1 also runs the tests that wait out real limits (the bridge's 30 s slow-client
# close with 1013).
export FLEETMQ_E2E_SLOW="${FLEETMQ_E2E_SLOW:-1}"
# A private base temp dir: another pytest run on the machine cannot clean up this one's files.
PYTEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-pytest.XXXXXX")"
# pytest-xdist: WORKERS processes, each module on one worker (`--dist loadfile`: a module's broker
# and fixtures stay in one process). Ports for servers that cannot bind port 0 come from a slice
# of each worker's own below the ephemeral range (tests/python/harness.py `free_port`).
PYTEST_WORKERS="${FLEETMQ_PYTEST_WORKERS:-3}"
step python-tests python3 -m pytest -q -p no:cacheprovider -n "$PYTEST_WORKERS" --dist loadfile \
    --basetemp "$PYTEST_TMP" tests/python

if [ "${#failed[@]}" -gt 0 ]; then
    echo "test.sh: FAILED steps: ${failed[*]}"
    exit 1
fi
echo "test.sh: all steps passed"
