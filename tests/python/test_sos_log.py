"""SOS durability (issue 19 item 3): the local SOS log in `--data-dir`.

- without Redis: `kill -9` right after the PUBACK of an SOS; the SOS is in `sos.log`, and a restart
  with `--redis` puts it in `fleetmq:sos`; a second restart (the log replayed again) stores it once;
- with Redis configured but down (a real redis-server stopped): the SOS is fsynced to the log
  before the PUBACK and before `events/{id}/sos`; after `kill -9` and Redis back, it reaches
  `fleetmq:sos` once.
"""

import json

from harness import wait_for
from mqttc import connected, reason_value, unique
from redis_cluster_util import redis_flags, store  # noqa: F401 (store: a fixture)
from test_redis import metric, rcli, redis_on


def log_records(data_dir) -> list:
    path = data_dir / "sos.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sos_in_redis(redis, vehicle: str) -> list:
    """The `payload` values of `fleetmq:sos` entries of `vehicle`."""
    lines = rcli(redis, ("XRANGE", "fleetmq:sos", "-", "+"))
    # --raw prints each entry as: id, then field and value lines.
    found = []
    for i, line in enumerate(lines):
        if line == "vehicle" and i + 1 < len(lines) and lines[i + 1] == vehicle:
            payload_at = lines.index("payload", i)
            found.append(lines[payload_at + 1])
    return found


def kill9(broker):
    broker.proc.kill()
    broker.proc.wait()


def send_sos(broker, vehicle: str, payload: bytes, data_dir):
    """Publishes an SOS (QoS 1) and checks it was on disk before the event and the PUBACK."""
    operator = connected(broker.addr)
    operator.subscribe("events/+/sos", 1)
    driver = connected(broker.addr)
    code, _ = driver.publish(f"fleet/{vehicle}/sos", payload, 1, timeout=10)
    assert reason_value(code) < 0x80
    # The PUBACK came after the fsync: the record is in the file now.
    assert any(r["vehicle"] == vehicle and r["payload"] == payload.decode()
               for r in log_records(data_dir))
    event = json.loads(operator.wait_messages(1)[0].payload)
    assert event["kind"] == "sos"
    assert metric(broker, "fleetmq_sos_logged_total") >= 1


def test_sos_without_redis_is_logged_and_replayed_once(fleetmq_factory, store, tmp_path):
    """On one redis-server and on a 3-master Redis Cluster (the write-once script on one slot)."""
    redis = store
    data_dir = tmp_path / "data"
    vehicle = unique("sos-noredis")
    broker = fleetmq_factory("--data-dir", str(data_dir))
    send_sos(broker, vehicle, b"help-no-redis", data_dir)
    kill9(broker)
    assert [r["payload"] for r in log_records(data_dir) if r["vehicle"] == vehicle] == [
        "help-no-redis"]

    # Restart with Redis: the log is replayed into it.
    fleetmq_factory("--data-dir", str(data_dir), *redis_flags(redis))
    wait_for(lambda: sos_in_redis(redis, vehicle) == ["help-no-redis"], 10,
             "the logged SOS in fleetmq:sos")
    # Replayed again by a second start: still stored once.
    again = fleetmq_factory("--data-dir", str(data_dir), *redis_flags(redis))
    wait_for(lambda: metric(again, "fleetmq_redis_sos_written_total") >= 1, 10,
             "the second replay written")
    assert sos_in_redis(redis, vehicle) == ["help-no-redis"]


def test_sos_with_redis_down_is_logged_and_reaches_redis_once(fleetmq_factory, redis, tmp_path):
    data_dir = tmp_path / "data"
    port = redis.port
    vehicle = unique("sos-down")
    broker = fleetmq_factory("--data-dir", str(data_dir), "--redis", redis.url)
    redis.stop()
    send_sos(broker, vehicle, b"help-redis-down", data_dir)
    kill9(broker)

    back = redis_on(port, tmp_path)
    try:
        assert sos_in_redis(back, vehicle) == []  # a fresh Redis: nothing from before
        fleetmq_factory("--data-dir", str(data_dir), "--redis", back.url)
        wait_for(lambda: sos_in_redis(back, vehicle) == ["help-redis-down"], 10,
                 "the logged SOS in fleetmq:sos once Redis is back")
    finally:
        back.stop()
