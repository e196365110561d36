"""Retained-store lookup scales (issue 2): a subscription to a narrow filter does not scan the
whole retained store. Users of Mosquitto and EMQX report seconds-long subscribes over 80k
retained messages; here a narrow subscribe with 80k retained must cost about what it costs
with 1k."""

import statistics
import time

import rawmqtt
from mqttc import unique


def fill_retained(raw: rawmqtt.RawClient, root: str, start: int, end: int):
    """Publishes retained QoS 0 messages `root/<i>/state` in one write, then a QoS 1 publish
    whose PUBACK proves the broker has processed all of them (packets are handled in order)."""
    batch = b"".join(rawmqtt.publish(f"{root}/{i}/state", b"%d" % i, retain=True)
                     for i in range(start, end))
    raw.send(batch)
    raw.send(rawmqtt.publish(f"{root}/sync", b"", qos=1, pkid=1))
    ack = raw.expect(rawmqtt.PUBACK, timeout=60)
    assert ack.pkid == 1


def narrow_subscribe_seconds(addr, root: str, rounds: int = 30) -> float:
    """Median time from SUBSCRIBE to the one retained message of a narrow filter."""
    raw = rawmqtt.RawClient(addr)
    raw.connect(unique("probe"))
    times = []
    for n in range(rounds):
        i = (n * 7919) % 1000
        start = time.perf_counter()
        raw.send(rawmqtt.subscribe(n + 1, [(f"{root}/{i}/state", 0)]))
        first = raw.recv(10)
        second = first if first and first.type == rawmqtt.PUBLISH else raw.recv(10)
        times.append(time.perf_counter() - start)
        got = [p for p in (first, second) if p is not None]
        assert any(p.type == rawmqtt.PUBLISH and p.payload == b"%d" % i for p in got), got
    raw.close()
    return statistics.median(times)


def test_narrow_subscribe_does_not_scan_retained_store(fleetmq_factory):
    broker = fleetmq_factory()
    root = unique("fleet")
    loader = rawmqtt.RawClient(broker.addr)
    loader.connect(unique("loader"))
    fill_retained(loader, root, 0, 1000)
    small = narrow_subscribe_seconds(broker.addr, root)
    fill_retained(loader, root, 1000, 80_000)
    large = narrow_subscribe_seconds(broker.addr, root)
    loader.close()
    print(f"narrow subscribe: {small * 1e3:.3f} ms (1k retained), {large * 1e3:.3f} ms (80k)")
    assert large < small * 5 + 0.005, (
        f"narrow subscribe took {large * 1e3:.2f} ms with 80k retained vs "
        f"{small * 1e3:.2f} ms with 1k: the lookup scans the store")
