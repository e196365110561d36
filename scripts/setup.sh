#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine for building and testing fleetmq.
# Installs the system packages the tests and the bench use (mosquitto clients and broker,
# redis-server, chromium + chromedriver for the map test, PostgreSQL 15 for the history tests,
# HAProxy for the cluster tests),
# the Python test dependencies into the
# current python3, and builds the whole workspace. It never starts a service.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# protobuf-compiler: `protoc` for the gtfs-realtime crate's prost build script; haproxy: the TCP
# load balancer in front of the cluster tests' nodes.
APT_PACKAGES=(mosquitto-clients mosquitto redis-server chromium chromium-driver python3 python3-pip postgresql protobuf-compiler haproxy)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update
    # Installing the mosquitto, redis and postgresql packages must not leave their services
    # running (the tests start their own servers).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
else
    echo "setup: system packages already installed"
fi

# gtfs-realtime-bindings decodes the GTFS-Realtime feeds; gtfs-rt-validator checks them;
# pytest-xdist runs the suites on several workers (scripts/test.sh).
PY_REQS=('paho-mqtt>=2,<3' pytest pytest-xdist websocket-client requests 'psycopg[binary]>=3.1' 'gtfs-realtime-bindings>=1' 'gtfs-rt-validator>=0.3')
if python3 - <<'PY' 2>/dev/null
import sys
import paho.mqtt, pytest, xdist, websocket, requests, psycopg  # noqa: F401
import google.transit.gtfs_realtime_pb2, gtfs_rt_validator  # noqa: F401
sys.exit(0 if paho.mqtt.__version__.startswith("2.") else 1)
PY
then
    echo "setup: python packages already installed"
else
    echo "setup: pip installing ${PY_REQS[*]}"
    # Debian's own python3 is "externally managed"; a pyenv/venv python is not.
    python3 -m pip install --quiet "${PY_REQS[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${PY_REQS[@]}"
fi

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# scripts/test.sh builds with this very command, so that its build step finds nothing to do.
cargo build --workspace --all-targets
echo "setup: done"
