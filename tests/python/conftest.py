"""Fixtures shared by the Python end-to-end suites.

`fleetmq` starts one broker per test module (the real debug binary, `serve` on port 0, stopped at
teardown); `fleetmq_factory` starts brokers with extra flags for a single test; `redis` starts a
throw-away redis-server on a free loopback port. Each broker's address comes from the one line it
prints once bound: `fleetmq listening mqtt=IP:PORT http=IP:PORT`.
"""

import os
import pathlib

import pytest

from harness import BrokerProcess, RedisProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def fleetmq_bin() -> pathlib.Path:
    """The binary under test: $FLEETMQ_BIN, else $CARGO_TARGET_DIR/debug/fleetmq, else target/."""
    if os.environ.get("FLEETMQ_BIN"):
        return pathlib.Path(os.environ["FLEETMQ_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "fleetmq"


@pytest.fixture(scope="session")
def fleetmq_path() -> pathlib.Path:
    path = fleetmq_bin()
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build -p fleetmq` first")
    return path


@pytest.fixture(scope="module")
def fleetmq(fleetmq_path, tmp_path_factory):
    """One broker with default settings, shared by every test of a module."""
    broker = BrokerProcess.start(fleetmq_path, [], tmp_path_factory.mktemp("fleetmq"))
    yield broker
    broker.stop()


@pytest.fixture
def fleetmq_factory(fleetmq_path, tmp_path):
    """Starts brokers with extra flags for one test: `fleetmq_factory("--max-queued", "5")`."""
    started = []

    def start(*args: str) -> BrokerProcess:
        broker = BrokerProcess.start(fleetmq_path, list(args), tmp_path)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def redis(tmp_path):
    """A redis-server of our own on a free loopback port, with persistence off."""
    server = RedisProcess.start(tmp_path)
    yield server
    server.stop()


def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every broker log the test used."""
    if call.when != "call" or call.excinfo is None:
        return
    for name in ("fleetmq", "fleetmq_factory"):
        if name in item.funcargs:
            item.add_report_section("call", "fleetmq log", BrokerProcess.recent_logs())
            break


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL 15 server of the module's own, run as an unprivileged user in a temp dir."""
    import pg_util

    if not pg_util.available():
        pytest.fail(f"PostgreSQL 15 not found in {pg_util.PG_BIN}: run scripts/setup.sh")
    server = pg_util.PostgresProcess()
    yield server
    server.destroy()
