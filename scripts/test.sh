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
# The end-to-end tests spawn the real binary, so build it first.
step build cargo build -p fleetmq
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
step python-tests python3 -m pytest -q -p no:cacheprovider --basetemp "$PYTEST_TMP" tests/python

if [ "${#failed[@]}" -gt 0 ]; then
    echo "test.sh: FAILED steps: ${failed[*]}"
    exit 1
fi
echo "test.sh: all steps passed"
