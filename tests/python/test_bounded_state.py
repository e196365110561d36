"""Bounded state (issue 19 item 4): `--max-vehicles`, `--max-sessions`, `--max-retained` and
`--max-retained-bytes` hold against one anonymous flooding client.

The floods run with the limits set low so CI stays fast; `FLEETMQ_FLOOD_SCALE=100000` runs the
same floods at the default limits (100,000) and prints the broker's RSS. Each test checks that the
broker stays within its limit, that the refusals are the documented ones (v5 PUBACK/CONNACK 0x97),
that the metrics count them, that what exists keeps working (a known vehicle, an existing session,
an existing retained topic), and that another client is unaffected.
"""

import json
import os
import time

import pytest

from harness import wait_for
from mqttc import connected, reason_value, unique
from rawmqtt import CONNACK, PUBACK, RawClient, connect, disconnect, publish
from test_redis import metric

SCALE = int(os.environ.get("FLEETMQ_FLOOD_SCALE", "0"))
QUOTA_EXCEEDED = 0x97
#: QoS 1 publishes sent ahead of their PUBACKs (below the broker's receive maximum).
WINDOW = 256


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def limit_args(flag: str, low: int):
    """The flag set low, or nothing at FLEETMQ_FLOOD_SCALE (the default limit applies)."""
    return [] if SCALE else [flag, str(low)]


def flood(broker, packets) -> list:
    """Sends QoS 1 publishes (pkid, bytes) pipelined on one anonymous v5 connection; the PUBACK
    reason codes in order."""
    c = RawClient(broker.addr)
    c.connect(unique("flood"))
    codes, sent = [], 0
    packets = list(packets)
    while len(codes) < len(packets):
        while sent < len(packets) and sent - len(codes) < WINDOW:
            c.send(packets[sent])
            sent += 1
        ack = c.expect(PUBACK, timeout=30)
        codes.append(ack.reason)
    c.close()
    return codes


def location(lat: float, lon: float, later_s: int = 0) -> bytes:
    ts = int(time.time() * 1000) + later_s * 1000
    return json.dumps({"lat": lat, "lon": lon, "ts": ts}).encode()


def report(what: str, broker, count: int):
    print(f"\n{what}: {count} sent, broker RSS {rss_kib(broker.pid) // 1024} MiB")


def test_vehicle_flood_refused_past_max_vehicles(fleetmq_factory):
    limit = SCALE or 1000
    total = limit + max(limit // 5, 200)
    broker = fleetmq_factory(*limit_args("--max-vehicles", 1000))
    prefix = unique("v")
    first = f"{prefix}-0"
    watcher = connected(broker.addr)
    watcher.subscribe(f"vehicles/{first}", 1)
    codes = flood(broker, (
        publish(f"fleet/{prefix}-{i}/location", location(-16.92 + i * 1e-6, 145.77), 1,
                pkid=i % 65535 + 1)
        for i in range(total)))
    assert all(c < 0x80 for c in codes[:limit]), "a vehicle within the limit was refused"
    assert set(codes[limit:]) == {QUOTA_EXCEEDED}
    assert metric(broker, "fleetmq_vehicles") == limit
    assert metric(broker, "fleetmq_vehicles_refused_total") == total - limit
    # A known vehicle is never evicted: it still updates, and its watcher hears it.
    watcher.wait_messages(1, timeout=10)
    watcher.clear()
    driver = connected(broker.addr)
    code, _ = driver.publish(f"fleet/{first}/location", location(-16.9201, 145.77, 1), 1)
    assert reason_value(code) < 0x80
    watcher.wait_messages(1, timeout=10)
    report("vehicles", broker, total)


def test_session_flood_refused_past_max_sessions(fleetmq_factory):
    limit = SCALE or 300
    broker = fleetmq_factory(*limit_args("--max-sessions", 300))
    prefix = unique("s")
    # A subscriber that is there before the flood keeps getting messages.
    other = connected(broker.addr)
    other.subscribe("news/#", 1)
    publisher = connected(broker.addr)
    expiry = [(0x11, 3600)]  # Session Expiry Interval: persistent

    def session(i: int) -> int:
        c = RawClient(broker.addr)
        c.send(connect(f"{prefix}-{i}", props=expiry))
        ack = c.expect(CONNACK, timeout=30)
        if ack.reason == 0:
            c.send(disconnect())
        c.close()
        return ack.reason

    # The subscriber and the publisher above hold two sessions.
    codes = [session(i) for i in range(limit - 2)]
    assert set(codes) == {0}
    assert session(limit) == QUOTA_EXCEEDED
    assert metric(broker, "fleetmq_sessions") == limit
    assert metric(broker, "fleetmq_sessions_refused_total") == 1
    # An existing (offline) session resumes.
    c = RawClient(broker.addr)
    c.send(connect(f"{prefix}-0", clean=False, props=expiry))
    ack = c.expect(CONNACK)
    assert ack.reason == 0 and ack.session_present
    c.close()
    publisher.publish("news/x", b"still here", 1)
    other.wait_payload(b"still here", timeout=10)
    report("sessions", broker, limit)


def test_retained_flood_refused_past_max_retained(fleetmq_factory):
    limit = SCALE or 500
    total = limit + 100
    broker = fleetmq_factory(*limit_args("--max-retained", 500))
    prefix = unique("r")
    other = connected(broker.addr)
    other.subscribe(f"{prefix}/0", 1)
    codes = flood(broker, (publish(f"{prefix}/{i}", b"x", 1, pkid=i % 65535 + 1, retain=True)
                           for i in range(total)))
    # The broker's own retained $SYS/vehicles topics do not count against the limit, but $SYS
    # may have taken slots before the flood: count what was admitted.
    admitted = sum(1 for c in codes if c < 0x80)
    assert admitted >= limit - 50 and set(codes[admitted:]) == {QUOTA_EXCEEDED}
    assert metric(broker, "fleetmq_retained_messages") <= limit
    assert metric(broker, "fleetmq_retained_refused_total") == total - admitted
    # An existing topic can be replaced and cleared; then a new one fits again.
    c = connected(broker.addr)
    code, _ = c.publish(f"{prefix}/0", b"replaced", 1, retain=True)
    assert reason_value(code) < 0x80
    other.wait_payload(b"replaced", timeout=10)
    code, _ = c.publish(f"{prefix}/1", b"", 1, retain=True)
    assert reason_value(code) < 0x80
    code, _ = c.publish(f"{prefix}/new", b"fits", 1, retain=True)
    assert reason_value(code) < 0x80
    code, _ = c.publish(f"{prefix}/new2", b"no room", 1, retain=True)
    assert reason_value(code) == QUOTA_EXCEEDED
    report("retained", broker, total)


def test_retained_bytes_limit(fleetmq_factory):
    if SCALE:
        pytest.skip("the byte limit is covered at low scale")
    broker = fleetmq_factory("--max-retained-bytes", "64KiB")
    prefix = unique("rb")
    c = connected(broker.addr)
    payload = b"p" * 1000
    codes = []
    for i in range(80):
        code, _ = c.publish(f"{prefix}/{i}", payload, 1, retain=True)
        codes.append(reason_value(code))
    refused = [i for i, code in enumerate(codes) if code == QUOTA_EXCEEDED]
    assert refused and refused == list(range(refused[0], 80))
    assert metric(broker, "fleetmq_retained_bytes") <= 64 * 1024
    # Shrinking an existing topic is always allowed.
    code, _ = c.publish(f"{prefix}/0", b"small", 1, retain=True)
    assert reason_value(code) < 0x80
