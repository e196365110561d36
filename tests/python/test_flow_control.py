"""Flow control (docs/mqtt.md): the server honours the client's Receive Maximum (at most that many
unacknowledged QoS 1/2 publishes in flight), advertises its own (--receive-maximum) and
disconnects a client that exceeds it with 0x93."""

import rawmqtt
from mqttc import connected, unique


def test_client_receive_maximum_limits_in_flight(fleetmq):
    topic = unique("inflight")
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("slowacker"), props=[(rawmqtt.RECEIVE_MAXIMUM, 2)])
    raw.subscribe(1, [(topic, 1)])
    pub = connected(fleetmq.addr)
    total = 10
    for i in range(total):
        pub.publish(topic, f"p{i}".encode(), qos=1)
    first = [raw.expect(rawmqtt.PUBLISH), raw.expect(rawmqtt.PUBLISH)]
    # With two unacknowledged, nothing more may come.
    assert raw.recv(timeout=1.0) is None, "a third PUBLISH while two are unacknowledged"
    received = list(first)
    unacked = list(first)
    while len(received) < total:
        raw.send(rawmqtt.ack(rawmqtt.PUBACK, unacked.pop(0).pkid))
        p = raw.expect(rawmqtt.PUBLISH)
        assert p.type == rawmqtt.PUBLISH
        received.append(p)
        unacked.append(p)
        assert len(unacked) <= 2
    assert [p.payload for p in received] == [f"p{i}".encode() for i in range(total)]
    assert all(p.qos == 1 for p in received)
    for p in unacked:
        raw.send(rawmqtt.ack(rawmqtt.PUBACK, p.pkid))
    raw.send(rawmqtt.disconnect())
    raw.close()
    pub.disconnect()


def test_client_receive_maximum_qos2(fleetmq):
    topic = unique("inflight2")
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("slowq2"), props=[(rawmqtt.RECEIVE_MAXIMUM, 1)])
    raw.subscribe(1, [(topic, 2)])
    pub = connected(fleetmq.addr)
    for i in range(3):
        pub.publish(topic, f"p{i}".encode(), qos=2)
    got = []
    for i in range(3):
        p = raw.expect(rawmqtt.PUBLISH)
        got.append(p.payload)
        # In flight until PUBCOMP is sent: nothing more after PUBREC alone.
        raw.send(rawmqtt.ack(rawmqtt.PUBREC, p.pkid))
        rel = raw.expect(rawmqtt.PUBREL)
        assert rel.pkid == p.pkid
        if i < 2:
            assert raw.recv(timeout=0.5) is None, "next PUBLISH before PUBCOMP"
        raw.send(rawmqtt.ack(rawmqtt.PUBCOMP, p.pkid))
    assert got == [b"p0", b"p1", b"p2"]
    raw.close()
    pub.disconnect()


def test_server_receive_maximum_exceeded_disconnects_0x93(fleetmq_factory):
    broker = fleetmq_factory("--receive-maximum", "2")
    raw = rawmqtt.RawClient(broker.addr)
    connack = raw.connect(unique("flooder"))
    assert connack.prop(rawmqtt.RECEIVE_MAXIMUM) == 2, "CONNACK advertises our Receive Maximum"
    # QoS 2 without PUBREL keeps each one in flight (PUBACKs would free QoS 1 at once).
    for pkid in (1, 2, 3):
        raw.send(rawmqtt.publish(unique("t"), b"x", qos=2, pkid=pkid))
    packets = raw.wait_closed(timeout=5)
    assert [p.type for p in packets[:2]] == [rawmqtt.PUBREC, rawmqtt.PUBREC]
    assert packets[-1].type == rawmqtt.DISCONNECT and packets[-1].reason == 0x93
    # The broker carries on.
    other = connected(broker.addr)
    other.disconnect()


def test_within_server_receive_maximum_is_fine(fleetmq_factory):
    broker = fleetmq_factory("--receive-maximum", "2")
    raw = rawmqtt.RawClient(broker.addr)
    raw.connect(unique("polite"))
    for round_ in range(3):
        pkids = (2 * round_ + 1, 2 * round_ + 2)
        for pkid in pkids:
            raw.send(rawmqtt.publish(unique("t"), b"x", qos=2, pkid=pkid))
        for pkid in pkids:
            assert raw.expect(rawmqtt.PUBREC).pkid == pkid
        for pkid in pkids:
            raw.send(rawmqtt.ack(rawmqtt.PUBREL, pkid))
        for pkid in pkids:
            assert raw.expect(rawmqtt.PUBCOMP).pkid == pkid
    # Still connected: a PINGREQ is answered.
    raw.send(rawmqtt.PINGREQ_BYTES)
    raw.expect(rawmqtt.PINGRESP)
    raw.send(rawmqtt.disconnect())
    raw.close()
