"""Retained messages (docs/mqtt.md): set, replace, clear with an empty payload, delivered on
subscribe with the retain flag; retain handling 0/1/2; retain-as-published; both protocol
versions."""

import pytest

from mqttc import V311, V5, connected, sub_options, unique


@pytest.mark.parametrize("version", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
def test_retained_set_replace_clear(fleetmq, version):
    topic = unique("retained")
    pub = connected(fleetmq.addr, protocol=version)
    pub.publish(topic, b"first", qos=1, retain=True)

    sub = connected(fleetmq.addr, protocol=version)
    sub.subscribe(topic, 1)
    msg = sub.wait_messages(1)[0]
    assert (msg.payload, msg.retain, msg.topic) == (b"first", True, topic)
    sub.disconnect()

    pub.publish(topic, b"second", qos=1, retain=True)
    sub = connected(fleetmq.addr, protocol=version)
    sub.subscribe(topic, 1)
    sub.subscribe(topic + "/end", 1)
    pub.publish(topic + "/end", b"end", qos=1)
    before = sub.wait_payload(b"end")
    assert [(m.payload, m.retain) for m in before] == [(b"second", True)], "replaced, not added"
    sub.disconnect()

    pub.publish(topic, b"", qos=1, retain=True)
    sub = connected(fleetmq.addr, protocol=version)
    sub.subscribe(topic, 1)
    sub.subscribe(topic + "/end", 1)
    pub.publish(topic + "/end", b"end", qos=1)
    assert sub.wait_payload(b"end") == [], "an empty retained payload clears the topic"
    sub.disconnect()
    pub.disconnect()


def test_retained_matched_by_wildcards_and_live_copy_not_retained(fleetmq):
    root = unique("rwild")
    pub = connected(fleetmq.addr)
    for leaf in ["a/1", "a/2", "b/1"]:
        pub.publish(f"{root}/{leaf}", leaf.encode(), qos=1, retain=True)
    sub = connected(fleetmq.addr)
    sub.subscribe(f"{root}/a/+", 1)
    msgs = sub.wait_messages(2)
    assert sorted(m.payload for m in msgs) == [b"a/1", b"a/2"]
    assert all(m.retain for m in msgs)
    # A live publish with retain=1 goes to existing subscribers with retain=0 (no RAP).
    pub.publish(f"{root}/a/3", b"live", qos=1, retain=True)
    live = sub.wait_messages(3)[2]
    assert live.payload == b"live" and not live.retain
    for leaf in ["a/1", "a/2", "a/3", "b/1"]:
        pub.publish(f"{root}/{leaf}", b"", qos=1, retain=True)
    sub.disconnect()
    pub.disconnect()


def test_retain_handling(fleetmq):
    topic = unique("rh")
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"kept", qos=1, retain=True)
    marker = topic + "/marker"

    # 0: send retained on every subscribe.
    c0 = connected(fleetmq.addr)
    c0.subscribe(topic, options=sub_options(1, retain_handling=0))
    assert c0.wait_messages(1)[0].payload == b"kept"
    c0.subscribe(topic, options=sub_options(1, retain_handling=0))
    assert [m.payload for m in c0.wait_messages(2)] == [b"kept", b"kept"]

    # 1: only when the subscription is new.
    c1 = connected(fleetmq.addr)
    c1.subscribe(marker, 1)
    c1.subscribe(topic, options=sub_options(1, retain_handling=1))
    assert c1.wait_messages(1)[0].payload == b"kept"
    c1.subscribe(topic, options=sub_options(1, retain_handling=1))
    pub.publish(marker, b"m1", qos=1)
    assert [m.payload for m in c1.wait_payload(b"m1")] == [b"kept"]

    # 2: never.
    c2 = connected(fleetmq.addr)
    c2.subscribe(marker, 1)
    c2.subscribe(topic, options=sub_options(1, retain_handling=2))
    pub.publish(marker, b"m2", qos=1)
    assert c2.wait_payload(b"m2") == []

    pub.publish(topic, b"", qos=1, retain=True)
    for c in (c0, c1, c2, pub):
        c.disconnect()


def test_retain_as_published(fleetmq):
    topic = unique("rap")
    rap = connected(fleetmq.addr)
    rap.subscribe(topic, options=sub_options(1, retain_as_published=True))
    plain = connected(fleetmq.addr)
    plain.subscribe(topic, options=sub_options(1, retain_as_published=False))
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"flagged", qos=1, retain=True)
    pub.publish(topic, b"unflagged", qos=1, retain=False)
    assert [(m.payload, m.retain) for m in rap.wait_messages(2)] == [
        (b"flagged", True), (b"unflagged", False)]
    assert [(m.payload, m.retain) for m in plain.wait_messages(2)] == [
        (b"flagged", False), (b"unflagged", False)]
    pub.publish(topic, b"", qos=1, retain=True)
    for c in (rap, plain, pub):
        c.disconnect()
