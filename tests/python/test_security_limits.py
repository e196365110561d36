"""Per-client publish rate with real clients (docs/security.md#abuse-limits, issue 6): over
`--max-publish-rate` a v5 client (paho) gets DISCONNECT 0x96 "message rate too high" and what it
sent beyond the budget is not forwarded; a 3.1.1 client, which has no server DISCONNECT, is closed.
A client within the rate is left alone, and the limit is per client, not global."""

import time

import rawmqtt
from mqttc import V311, V5, Client, connected, reason_value, unique

RATE = 10


def test_v5_client_over_the_rate_gets_0x96_and_the_excess_is_dropped(fleetmq_factory):
    broker = fleetmq_factory("--max-publish-rate", str(RATE))
    topic = unique("rate")
    watcher = connected(broker.addr)
    watcher.subscribe(topic, 0)
    chatty = connected(broker.addr)
    for i in range(200):
        info = chatty.publish_nowait(topic, str(i).encode(), qos=0)
        if chatty.disconnected is not None or info.rc != 0:
            break
    _, code, props = chatty.wait_disconnected(10)
    assert reason_value(code) == 0x96, code
    # Mark the end of the stream with another (calm) client's message.
    calm = connected(broker.addr)
    calm.publish(topic, b"end", qos=1)
    before = watcher.wait_payload(b"end")
    got = [int(m.payload) for m in before]
    assert got == list(range(len(got))), "what was forwarded is a prefix, in order"
    # A one-second budget, plus what refilled while the burst was being read.
    assert 1 <= len(got) <= 2 * RATE, f"{len(got)} of 200 forwarded at {RATE}/s"
    calm.disconnect()
    watcher.disconnect()


def test_v311_client_over_the_rate_is_closed_without_disconnect(fleetmq_factory):
    broker = fleetmq_factory("--max-publish-rate", str(RATE))
    raw = rawmqtt.RawClient(broker.addr, v5=False)
    raw.connect(unique("chatty311"))
    raw.send(b"".join(rawmqtt.publish(unique("rate"), b"x", v5=False) for _ in range(300)))
    packets = raw.wait_closed(10)
    assert not any(p.type == rawmqtt.DISCONNECT for p in packets), packets
    # paho 3.1.1 sees the close too.
    c = Client(broker.addr, unique("paho311"), V311)
    c.connect()
    for _ in range(300):
        c.publish_nowait(unique("rate"), b"x", qos=0)
        if c.disconnected is not None:
            break
    c.wait_disconnected(10)


def test_within_the_rate_and_per_client(fleetmq_factory):
    broker = fleetmq_factory("--max-publish-rate", str(RATE))
    topic = unique("calm")
    # Two clients each publish about 2/3 of the rate for two seconds: together they exceed it,
    # which would matter only if the budget were global.
    a, b = connected(broker.addr), connected(broker.addr)
    deadline = time.monotonic() + 2.0
    sent = 0
    while time.monotonic() < deadline:
        for c in (a, b):
            assert reason_value(c.publish(topic, b"x", qos=1)[0]) < 0x80
        sent += 2
        time.sleep(1.5 / RATE)  # pacing: each ~2/3 of the rate, together over it
    assert a.disconnected is None and b.disconnected is None
    assert sent >= RATE
    a.disconnect()
    b.disconnect()
