"""Publish/subscribe (docs/mqtt.md): QoS 0/1/2 on both protocol versions, the topic tree's `+`/`#`,
QoS downgrade to the subscription's maximum, unsubscribe, and QoS 2 exactly-once."""

import pytest

import rawmqtt
from mqttc import V311, V5, connected, reason_value, unique

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub_each_qos(fleetmq, version, qos):
    sub = connected(fleetmq.addr, protocol=version)
    pub = connected(fleetmq.addr, protocol=version)
    topic = unique(f"qos{qos}") + "/x"
    codes, _ = sub.subscribe(topic, qos)
    assert [reason_value(c) for c in codes] == [qos], "granted QoS"
    payloads = [f"m{i}".encode() for i in range(20)]
    for p in payloads:
        ack = pub.publish(topic, p, qos=qos)
        if qos:
            assert reason_value(ack[0]) in (0, 0x10), f"ack reason {ack[0]}"
    msgs = sub.wait_messages(len(payloads))
    assert [m.payload for m in msgs] == payloads, "in order, each exactly once"
    assert all(m.qos == qos and m.topic == topic and not m.retain for m in msgs)
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_qos_downgraded_to_subscription(fleetmq, version):
    sub = connected(fleetmq.addr, protocol=version)
    topic = unique("down")
    sub.subscribe(topic, 1)
    pub = connected(fleetmq.addr, protocol=version)
    pub.publish(topic, b"two", qos=2)
    msg = sub.wait_messages(1)[0]
    assert msg.qos == 1
    sub.disconnect()
    pub.disconnect()


def test_wildcards(fleetmq):
    root = unique("tree")
    sub = connected(fleetmq.addr)
    sub.subscribe([(f"{root}/+/b", 0), (f"{root}/x/#", 0)])
    pub = connected(fleetmq.addr)
    for topic in [f"{root}/a/b", f"{root}/a/c", f"{root}/a/b/c", f"{root}/x", f"{root}/x/y/z",
                  f"{root}/q/b"]:
        pub.publish(topic, topic.encode(), qos=1)
    pub.publish(f"{root}/x/end", b"end", qos=1)
    before = sub.wait_payload(b"end")
    got = sorted(m.topic for m in before)
    # `#` also matches its parent level; `+` matches exactly one level.
    assert got == sorted([f"{root}/a/b", f"{root}/x", f"{root}/x/y/z", f"{root}/q/b"])
    sub.disconnect()
    pub.disconnect()


def test_overlapping_subscriptions_deliver_once_per_client(fleetmq):
    root = unique("overlap")
    sub = connected(fleetmq.addr)
    sub.subscribe([(f"{root}/#", 1), (f"{root}/+", 1), (f"{root}/a", 1)])
    pub = connected(fleetmq.addr)
    pub.publish(f"{root}/a", b"one", qos=1)
    pub.publish(f"{root}/end", b"end", qos=1)
    before = sub.wait_payload(b"end")
    # MQTT 5 §3.3.4: the server may send one copy per matching subscription or just one;
    # paho delivers each copy. Every copy is the same message.
    assert before and all(m.payload == b"one" for m in before)
    sub.disconnect()
    pub.disconnect()


def test_unsubscribe_stops_delivery(fleetmq):
    topic = unique("unsub")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    sub.subscribe(topic + "/end", 1)
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"first", qos=1)
    sub.wait_payload(b"first")
    codes, _ = sub.unsubscribe(topic)
    assert [reason_value(c) for c in codes] == [0]
    pub.publish(topic, b"second", qos=1)
    pub.publish(topic + "/end", b"end", qos=1)
    sub.wait_payload(b"end")
    assert sub.payloads(topic) == [b"first"]
    codes, _ = sub.unsubscribe(unique("never-subscribed"))
    assert [reason_value(c) for c in codes] == [0x11], "No subscription existed"
    sub.disconnect()
    pub.disconnect()


def test_qos2_exactly_once_with_duplicate_publish(fleetmq):
    """A QoS 2 PUBLISH resent with DUP before PUBREL is not delivered twice."""
    topic = unique("exactly")
    sub = connected(fleetmq.addr)
    # QoS 1 towards the watcher: paho hands QoS 2 messages over only at PUBREL, which would let
    # the QoS 1 end marker overtake them; a duplicate forward would still show as two messages.
    sub.subscribe(topic, 1)
    sub.subscribe(topic + "/end", 1)
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("raw-q2"))
    raw.send(rawmqtt.publish(topic, b"once", qos=2, pkid=7))
    assert raw.expect(rawmqtt.PUBREC).pkid == 7
    raw.send(rawmqtt.publish(topic, b"once", qos=2, pkid=7, dup=True))
    assert raw.expect(rawmqtt.PUBREC).pkid == 7
    raw.send(rawmqtt.ack(rawmqtt.PUBREL, 7))
    comp = raw.expect(rawmqtt.PUBCOMP)
    assert comp.pkid == 7 and comp.reason == 0
    raw.send(rawmqtt.publish(topic + "/end", b"end", qos=1, pkid=8))
    raw.expect(rawmqtt.PUBACK)
    before = sub.wait_payload(b"end")
    assert [m.payload for m in before] == [b"once"]
    raw.send(rawmqtt.disconnect())
    raw.close()
    sub.disconnect()


def test_unacked_qos1_redelivered_with_dup_on_reconnect(fleetmq):
    """An unacknowledged QoS 1 message is resent with DUP when the session resumes."""
    topic = unique("redeliver")
    client_id = unique("redeliver")
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(client_id, clean=False, props=[(rawmqtt.SESSION_EXPIRY, 60)])
    raw.subscribe(1, [(topic, 1)])
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"unacked", qos=1)
    first = raw.expect(rawmqtt.PUBLISH)
    assert first.payload == b"unacked" and not first.dup
    raw.close()  # no PUBACK, no DISCONNECT
    again = rawmqtt.RawClient(fleetmq.addr)
    connack = again.connect(client_id, clean=False, props=[(rawmqtt.SESSION_EXPIRY, 60)])
    assert connack.session_present
    redelivered = again.expect(rawmqtt.PUBLISH)
    assert redelivered.payload == b"unacked"
    assert redelivered.dup, "a redelivered PUBLISH has DUP set"
    assert redelivered.pkid == first.pkid
    again.send(rawmqtt.ack(rawmqtt.PUBACK, redelivered.pkid))
    again.send(rawmqtt.disconnect(reason=0))
    again.close()
    # Clean up the session: connect with clean start and session expiry 0.
    cleanup = rawmqtt.RawClient(fleetmq.addr)
    cleanup.connect(client_id, clean=True)
    cleanup.send(rawmqtt.disconnect())
    cleanup.close()
    pub.disconnect()


def _resume(addr, client_id):
    raw = rawmqtt.RawClient(addr)
    connack = raw.connect(client_id, clean=False, props=[(rawmqtt.SESSION_EXPIRY, 60)])
    assert connack.session_present
    return raw


def _end_session(addr, client_id):
    cleanup = rawmqtt.RawClient(addr)
    cleanup.connect(client_id, clean=True)
    cleanup.send(rawmqtt.disconnect())
    cleanup.close()


def test_qos2_publish_and_pubrel_redelivered_on_reconnect(fleetmq):
    """QoS 2 towards a subscriber survives reconnects at both stages: an unanswered PUBLISH is
    resent with DUP; after PUBREC, the PUBREL is resent (and the message not sent again)."""
    topic, client_id = unique("q2redeliver"), unique("q2sess")
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(client_id, clean=False, props=[(rawmqtt.SESSION_EXPIRY, 60)])
    raw.subscribe(1, [(topic, 2)])
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"twice-safe", qos=2)
    first = raw.expect(rawmqtt.PUBLISH)
    assert first.qos == 2
    raw.close()

    raw = _resume(fleetmq.addr, client_id)
    again = raw.expect(rawmqtt.PUBLISH)
    assert (again.payload, again.pkid, again.dup) == (b"twice-safe", first.pkid, True)
    raw.send(rawmqtt.ack(rawmqtt.PUBREC, again.pkid))
    assert raw.expect(rawmqtt.PUBREL).pkid == again.pkid
    raw.close()

    raw = _resume(fleetmq.addr, client_id)
    rel = raw.expect(rawmqtt.PUBREL)
    assert rel.pkid == first.pkid, "PUBREL resent, not the PUBLISH"
    raw.send(rawmqtt.ack(rawmqtt.PUBCOMP, rel.pkid))
    # Nothing else is pending: a PINGREQ is answered next.
    raw.send(rawmqtt.PINGREQ_BYTES)
    raw.expect(rawmqtt.PINGRESP)
    raw.send(rawmqtt.disconnect())
    raw.close()
    _end_session(fleetmq.addr, client_id)
    pub.disconnect()


def test_inbound_qos2_survives_reconnect_before_pubrel(fleetmq):
    """A publisher's QoS 2 message received (PUBREC) but not yet released is delivered once when
    the publisher resumes its session and sends PUBREL."""
    topic, client_id = unique("q2in"), unique("q2pub")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(client_id, clean=False, props=[(rawmqtt.SESSION_EXPIRY, 60)])
    raw.send(rawmqtt.publish(topic, b"held", qos=2, pkid=42))
    assert raw.expect(rawmqtt.PUBREC).pkid == 42
    raw.close()
    raw = _resume(fleetmq.addr, client_id)
    raw.send(rawmqtt.publish(topic, b"held", qos=2, pkid=42, dup=True))
    assert raw.expect(rawmqtt.PUBREC).pkid == 42
    raw.send(rawmqtt.ack(rawmqtt.PUBREL, 42))
    assert raw.expect(rawmqtt.PUBCOMP).pkid == 42
    connected(fleetmq.addr).publish(topic, b"marker", qos=1)
    sub.wait_payload(b"marker")
    assert sub.payloads(topic).count(b"held") == 1, "delivered exactly once"
    raw.send(rawmqtt.disconnect())
    raw.close()
    _end_session(fleetmq.addr, client_id)
    sub.disconnect()
