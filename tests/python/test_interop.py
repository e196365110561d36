"""Interoperability as a Mosquitto user expects it (issue 11), each a regression test:

- ACL (docs/security.md): a filter is granted when one readable topic matches it, and every message
  is checked before delivery: with one deny rule a `#` subscriber gets everything but the denied
  topic (retained copies included), and SUBACK 0x87 (3.1.1 0x80) only for a filter that matches
  nothing readable;
- a v5 client's Maximum Packet Size is honoured exactly (docs/mqtt.md): a message that fits (the
  issue's 26-byte PUBLISH on `client_test5/TopicA` to a 64-byte client) arrives, one byte more does
  not;
- `$` topics other than `$SYS`/`$share` are ordinary topics, and `#`/`+` do not match them;
- reason strings only when they fit and the client did not set Request Problem Information 0;
- PUBREL / PUBREC for an unknown packet identifier get PUBCOMP / PUBREL 0x92;
- 3.1.1 persistent sessions expire after `--session-expiry-311`.
"""

import pytest

import rawmqtt
from harness import wait_for
from mqttc import (V311, V5, Client, connect_props, connected, prop, publish_props, reason_value,
                   unique)

ONE_DENY = """
[[rule]]
topic = "test/nosubscribe"
access = "deny"
"""


def acl_broker(factory, tmp_path, text):
    path = tmp_path / "acl.toml"
    path.write_text(text)
    return factory("--acl", str(path))


def codes(result):
    return [reason_value(x) for x in result[0]]


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_one_deny_rule_grants_hash_and_refuses_only_unreadable_filters(fleetmq_factory, tmp_path,
                                                                       protocol):
    """The issue's reproduction: `--acl` with one deny rule, then SUBSCRIBE `#`."""
    broker = acl_broker(fleetmq_factory, tmp_path, ONE_DENY)
    c = connected(broker.addr, protocol=protocol)
    refused = 0x87 if protocol == V5 else 0x80
    result = c.subscribe([("#", 1), ("test/+", 1), ("test/nosubscribe/#", 1),
                          ("test/nosubscribe", 1), ("$share/g/test/nosubscribe", 1)])
    assert codes(result) == [1, 1, 1, refused, refused]
    c.disconnect()


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_hash_subscriber_receives_everything_but_the_denied_topic(fleetmq_factory, tmp_path,
                                                                   protocol):
    """The deny rule is for the reader only, so the denied topic is published (live and
    retained) and the check before delivery is what keeps it away."""
    reader_id = unique("reader")
    broker = acl_broker(fleetmq_factory, tmp_path, f"""
[[rule]]
client = "{reader_id}"
topic = "test/nosubscribe"
access = "deny"
""")
    pub = connected(broker.addr)
    assert reason_value(pub.publish("test/nosubscribe", b"retained-secret", 1, retain=True)[0]) == 0
    assert reason_value(pub.publish("test/open", b"retained-open", 1, retain=True)[0]) == 0
    reader = Client(broker.addr, reader_id, protocol)
    reader.connect()
    assert codes(reader.subscribe("#", 1)) == [1]
    wait_for(lambda: reader.payloads("test/open"), 5, "the readable retained message")
    for topic in ["test/a", "test/nosubscribe", "test/b", "other/x", "test/nosubscribe"]:
        pub.publish(topic, f"live {topic}".encode(), qos=1)
    pub.publish("test/end", b"marker", qos=1)
    before = reader.wait_payload(b"marker")
    got = [(m.topic, m.payload) for m in before]
    assert ("test/nosubscribe", b"retained-secret") not in got
    assert [t for t, _ in got if not t.startswith("test/open")] == ["test/a", "test/b", "other/x"]
    assert all(t != "test/nosubscribe" for t, _ in got), got
    reader.disconnect()
    pub.disconnect()


def _send_to_small_client(broker, max_size, qos):
    """A v5 client with Maximum Packet Size `max_size` on `client_test5/TopicA` (and a second
    subscription with an identifier); returns (client, publisher)."""
    small = Client(broker.addr, unique("small"), V5)
    small.connect(properties=connect_props(MaximumPacketSize=max_size))
    assert codes(small.subscribe("client_test5/TopicA", qos)) == [qos]
    return small, connected(broker.addr)


@pytest.mark.parametrize("qos", [0, 1])
def test_maximum_packet_size_is_exact(fleetmq_factory, qos):
    """Fixed header 2 + topic 2+19 + (pkid 2) + properties 1 + payload: with 64 bytes allowed
    the payload may be 40 bytes at QoS 0 (38 at QoS 1), and not one more."""
    broker = fleetmq_factory()
    small, pub = _send_to_small_client(broker, 64, qos)
    fits = 40 - 2 * qos
    payloads = [b"ab", b"x" * fits, b"y" * (fits + 1), b"z" * 200, b"w" * (fits - 1)]
    for p in payloads:
        pub.publish("client_test5/TopicA", p, qos=qos)
    pub.publish("client_test5/TopicA", b"end", qos=qos)
    before = small.wait_payload(b"end", 10)
    assert [m.payload for m in before] == [b"ab", b"x" * fits, b"w" * (fits - 1)]
    assert small.disconnected is None
    small.disconnect()
    pub.disconnect()


def test_maximum_packet_size_counts_what_the_client_gets(fleetmq_factory):
    """Subscription identifiers and the remaining expiry are part of the size: a message that
    fits without them does not fit with them, and is dropped and counted."""
    broker = fleetmq_factory()
    small = Client(broker.addr, unique("small"), V5)
    small.connect(properties=connect_props(MaximumPacketSize=64))
    sid = props_subscribe(SubscriptionIdentifier=1000)  # 2-byte VBI + 1 id byte: 3 bytes
    assert codes(small.subscribe("client_test5/TopicA", 0, properties=sid)) == [0]
    pub = connected(broker.addr)
    pub.publish("client_test5/TopicA", b"a" * 37, qos=0)  # 61 + 3 = 64: fits
    pub.publish("client_test5/TopicA", b"b" * 38, qos=0)  # 65: dropped
    # Message expiry adds 5 bytes: 32 + 24 + 3 + 5 = 64 fits, 33 does not.
    pub.publish("client_test5/TopicA", b"c" * 32, qos=0,
                properties=publish_props(MessageExpiryInterval=60))
    pub.publish("client_test5/TopicA", b"d" * 33, qos=0,
                properties=publish_props(MessageExpiryInterval=60))
    pub.publish("client_test5/TopicA", b"end", qos=0)
    before = small.wait_payload(b"end", 10)
    assert [m.payload[:1] for m in before] == [b"a", b"c"]
    assert all(prop(m.properties, "SubscriptionIdentifier") == [1000] for m in before)
    small.disconnect()
    pub.disconnect()


def props_subscribe(**values):
    from paho.mqtt.packettypes import PacketTypes
    from mqttc import props
    return props(PacketTypes.SUBSCRIBE, **values)


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_dollar_topics_round_trip_and_are_not_matched_by_wildcards(fleetmq, protocol):
    topic = "$internal/" + unique("x")
    exact = connected(fleetmq.addr, protocol=protocol)
    assert codes(exact.subscribe("$internal/#", 1)) == [1]
    hash_sub = connected(fleetmq.addr, protocol=protocol)
    assert codes(hash_sub.subscribe([("#", 1), ("+/" + topic.split("/")[1], 1)])) == [1, 1]
    pub = connected(fleetmq.addr, protocol=protocol)
    result = pub.publish(topic, b"dollar", qos=1)
    if protocol == V5:
        assert reason_value(result[0]) == 0
        assert prop(result[1], "ReasonString") is None
    assert exact.wait_messages(1)[0].payload == b"dollar"
    assert exact.messages[0].topic == topic
    marker = unique("m").encode()
    pub.publish("plain/" + unique("t"), marker, qos=1)
    assert [m.topic for m in hash_sub.wait_payload(marker)] == []
    # `$SYS` stays the broker's.
    if protocol == V5:
        assert reason_value(pub.publish("$SYS/fake", b"x", qos=1)[0]) == 0x87
    for c in (exact, hash_sub, pub):
        c.disconnect()


def raw_v5(broker, props=None):
    raw = rawmqtt.RawClient(broker.addr, v5=True)
    connack = raw.connect(unique("raw"), props=props)
    assert connack.reason == 0
    return raw


def test_dollar_publish_gets_a_short_puback(fleetmq):
    """Strict clients parse only 2-4 byte PUBACKs: a `$` topic is accepted with the short form."""
    raw = raw_v5(fleetmq)
    raw.send(rawmqtt.publish("$internal/" + unique("x"), b"p", qos=1, pkid=9))
    ack = raw.expect(rawmqtt.PUBACK)
    assert ack.raw == bytes([0x40, 0x00, 0x09]), ack.raw.hex()  # type, then the body
    raw.close()


def test_reason_strings_only_when_wanted_and_when_they_fit(fleetmq):
    """A denied publish (to `$SYS`) gets PUBACK 0x87: with a reason string by default, without
    one when Request Problem Information is 0 or the string would not fit the client's Maximum
    Packet Size."""
    denied = rawmqtt.publish("$SYS/x", b"p", qos=1, pkid=3)
    raw = raw_v5(fleetmq)
    raw.send(denied)
    ack = raw.expect(rawmqtt.PUBACK)
    assert ack.reason == 0x87 and ack.prop(0x1F), "a reason string by default"
    raw.close()
    for props in ([(0x17, 0)], [(0x27, 16)]):  # Request Problem Information 0; max 16 bytes
        raw = raw_v5(fleetmq, props=props)
        raw.send(denied)
        ack = raw.expect(rawmqtt.PUBACK)
        assert ack.raw == bytes([0x40, 0x00, 0x03, 0x87]), (props, ack.raw.hex())
        raw.close()


@pytest.mark.parametrize("v5", [True, False], ids=["v5", "v311"])
def test_unknown_packet_ids_get_0x92(fleetmq, v5):
    raw = rawmqtt.RawClient(fleetmq.addr, v5=v5)
    assert raw.connect(unique("raw")).reason == 0
    # PUBREL for an id the client never published with QoS 2: PUBCOMP 0x92.
    raw.send(rawmqtt.ack(rawmqtt.PUBREL, 77, 0 if v5 else None))
    comp = raw.expect(rawmqtt.PUBCOMP)
    assert comp.pkid == 77
    assert comp.raw == (bytes([0x70, 0, 77, 0x92]) if v5 else bytes([0x70, 0, 77]))
    # PUBREC for an id the broker never sent: PUBREL 0x92.
    raw.send(rawmqtt.ack(rawmqtt.PUBREC, 78, 0 if v5 else None))
    rel = raw.expect(rawmqtt.PUBREL)
    assert rel.pkid == 78
    assert rel.raw == (bytes([0x62, 0, 78, 0x92]) if v5 else bytes([0x62, 0, 78]))
    # A real QoS 2 exchange still completes with success.
    raw.send(rawmqtt.publish(unique("q2"), b"x", qos=2, pkid=5, v5=v5))
    assert raw.expect(rawmqtt.PUBREC).reason in (None, 0)
    raw.send(rawmqtt.ack(rawmqtt.PUBREL, 5, 0 if v5 else None))
    comp = raw.expect(rawmqtt.PUBCOMP)
    assert comp.pkid == 5 and comp.reason in (None, 0)
    raw.close()


def test_pubrec_for_a_message_in_flight_is_answered_normally(fleetmq):
    """The broker's own QoS 2 delivery: PUBREC for its id gets a plain PUBREL (not 0x92)."""
    topic = unique("q2out")
    raw = raw_v5(fleetmq)
    raw.subscribe(1, [(topic, 2)])
    connected(fleetmq.addr).publish(topic, b"x", qos=2)
    pub = raw.expect(rawmqtt.PUBLISH)
    raw.send(rawmqtt.ack(rawmqtt.PUBREC, pub.pkid, 0))
    rel = raw.expect(rawmqtt.PUBREL)
    assert rel.pkid == pub.pkid and rel.reason in (None, 0)
    raw.send(rawmqtt.ack(rawmqtt.PUBCOMP, pub.pkid, 0))
    raw.close()


def _sessions(broker) -> float:
    import urllib.request
    url = f"http://{broker.http_host}:{broker.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("fleetmq_sessions "):
                return float(line.split()[1])
    raise AssertionError("fleetmq_sessions missing")


def test_v311_persistent_session_expires(fleetmq_factory):
    broker = fleetmq_factory("--session-expiry-311", "2s")
    client_id = unique("p311")
    c = Client(broker.addr, client_id, V311)
    c.connect(clean_start=False)
    c.subscribe(unique("t"), 1)
    c.disconnect()
    wait_for(lambda: _sessions(broker) == 1, 5, "the session kept after disconnect")
    # Kept for about 2 s, gone within the router's one-second tick after that.
    wait_for(lambda: _sessions(broker) == 0, 15, "the session to expire")
    c.connect(clean_start=False)
    assert not c.session_present, "an expired session does not come back"
    c.disconnect()


def test_v311_persistent_session_kept_by_default(fleetmq_factory):
    broker = fleetmq_factory()
    client_id = unique("p311")
    c = Client(broker.addr, client_id, V311)
    c.connect(clean_start=False)
    c.disconnect()
    c.connect(clean_start=False)
    assert c.session_present
    c.disconnect()
