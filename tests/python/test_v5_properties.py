"""MQTT 5 message and subscription features (docs/mqtt.md#feature-list): topic aliases both ways,
subscription identifiers, no-local, user properties, request/response properties (response topic,
correlation data, content type, payload format), and the client's maximum packet size."""

import rawmqtt
from mqttc import V5, Client, connect_props, connected, prop, publish_props, sub_options, unique
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def test_topic_alias_client_to_server(fleetmq):
    topic = unique("alias-in")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    pub = Client(fleetmq.addr, unique("aliaser"), V5)
    pub.connect()
    alias_max = prop(pub.connack_properties, "TopicAliasMaximum", 0)
    assert alias_max >= 1, "the server accepts topic aliases (CONNACK Topic Alias Maximum)"
    pub.publish(topic, b"set", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", b"used", qos=1, properties=publish_props(TopicAlias=1))
    msgs = sub.wait_messages(2)
    assert [(m.topic, m.payload) for m in msgs] == [(topic, b"set"), (topic, b"used")]
    sub.disconnect()
    pub.disconnect()


def test_topic_alias_over_maximum_is_protocol_error(fleetmq):
    raw = rawmqtt.RawClient(fleetmq.addr)
    connack = raw.connect(unique("badalias"))
    alias_max = connack.prop(rawmqtt.TOPIC_ALIAS_MAXIMUM, 0)
    raw.send(rawmqtt.publish("x", b"x", props=[(rawmqtt.TOPIC_ALIAS, alias_max + 1)]))
    packets = raw.wait_closed()
    assert packets and packets[0].type == rawmqtt.DISCONNECT
    assert packets[0].reason == 0x94, "Topic Alias invalid"


def test_unknown_topic_alias_is_protocol_error(fleetmq):
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("noalias"))
    raw.send(rawmqtt.publish("", b"x", props=[(rawmqtt.TOPIC_ALIAS, 1)]))
    packets = raw.wait_closed()
    assert packets and packets[0].type == rawmqtt.DISCONNECT
    assert packets[0].reason in (0x82, 0x94)


def test_topic_alias_server_to_client(fleetmq):
    """With Topic Alias Maximum in CONNECT, the server replaces repeated topics with an alias."""
    topic = unique("alias-out") + "/a/rather/long/topic/name/worth/aliasing"
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("aliased"), props=[(rawmqtt.TOPIC_ALIAS_MAXIMUM, 4)])
    raw.subscribe(1, [(topic, 0)])
    pub = connected(fleetmq.addr)
    for i in range(5):
        pub.publish(topic, f"n{i}".encode(), qos=1)
    aliases = {}
    resolved, used_alias = [], False
    for _ in range(5):
        p = raw.expect(rawmqtt.PUBLISH)
        alias = p.prop(rawmqtt.TOPIC_ALIAS)
        if alias is not None:
            used_alias = True
            assert 1 <= alias <= 4, f"alias {alias} over our maximum 4"
            if p.topic:
                aliases[alias] = p.topic
            assert alias in aliases, "alias used before it was set"
            resolved.append((aliases[alias], p.payload))
        else:
            assert p.topic, "empty topic without an alias"
            resolved.append((p.topic, p.payload))
    assert resolved == [(topic.encode(), f"n{i}".encode()) for i in range(5)]
    assert used_alias, "the server never used a topic alias towards a client that allows them"
    raw.close()
    pub.disconnect()


def test_no_topic_alias_when_client_allows_none(fleetmq):
    topic = unique("no-alias-out")
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("plain"))
    raw.subscribe(1, [(topic, 0)])
    pub = connected(fleetmq.addr)
    for i in range(3):
        pub.publish(topic, b"x", qos=1)
    for _ in range(3):
        p = raw.expect(rawmqtt.PUBLISH)
        assert p.topic == topic.encode() and p.prop(rawmqtt.TOPIC_ALIAS) is None
    raw.close()
    pub.disconnect()


def test_subscription_identifiers(fleetmq):
    root = unique("subid")
    sub = connected(fleetmq.addr)
    p7 = Properties(PacketTypes.SUBSCRIBE)
    p7.SubscriptionIdentifier = 7
    sub.subscribe(f"{root}/#", 1, properties=p7)
    p900 = Properties(PacketTypes.SUBSCRIBE)
    p900.SubscriptionIdentifier = 900  # needs two bytes as a variable byte integer
    sub.subscribe(f"{root}/both", 1, properties=p900)
    pub = connected(fleetmq.addr)
    pub.publish(f"{root}/one", b"one", qos=1)
    pub.publish(f"{root}/both", b"both", qos=1)
    pub.publish(f"{root}/end", b"end", qos=1)
    before = sub.wait_payload(b"end")
    ids = {}
    for m in before:
        ids.setdefault(m.payload, set()).update(prop(m.properties, "SubscriptionIdentifier", []))
    assert ids[b"one"] == {7}
    assert ids[b"both"] == {7, 900}
    # A subscription without an identifier adds none.
    plain = connected(fleetmq.addr)
    plain.subscribe(f"{root}/one", 1)
    pub.publish(f"{root}/one", b"plain", qos=1)
    assert not prop(plain.wait_messages(1)[0].properties, "SubscriptionIdentifier", [])
    for c in (sub, plain, pub):
        c.disconnect()


def test_no_local(fleetmq):
    topic = unique("nolocal")
    me = connected(fleetmq.addr)
    me.subscribe(topic, options=sub_options(1, no_local=True))
    me.subscribe(topic + "/own", options=sub_options(1, no_local=False))
    other = connected(fleetmq.addr)
    other.subscribe(topic, 1)
    me.publish(topic, b"mine", qos=1)
    other.publish(topic, b"theirs", qos=1)
    assert [m.payload for m in me.wait_payload(b"theirs")] == []
    assert [m.payload for m in other.wait_messages(2)] == [b"mine", b"theirs"]
    # Without no-local a client gets its own messages.
    me.publish(topic + "/own", b"echo", qos=1)
    me.wait_payload(b"echo")
    me.disconnect()
    other.disconnect()


def test_user_and_request_response_properties_passed_through(fleetmq):
    topic = unique("props")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    pub = connected(fleetmq.addr)
    users = [("k", "v1"), ("k", "v2"), ("trace-id", "abc"), ("ünï", "cödé")]
    pub.publish(topic, "{\"x\":1}".encode(), qos=1, properties=publish_props(
        UserProperty=users, ResponseTopic=topic + "/reply", CorrelationData=b"\x00\x01corr",
        ContentType="application/json", PayloadFormatIndicator=1))
    m = sub.wait_messages(1)[0]
    assert list(prop(m.properties, "UserProperty", [])) == users, "order and duplicates kept"
    assert prop(m.properties, "ResponseTopic") == topic + "/reply"
    assert prop(m.properties, "CorrelationData") == b"\x00\x01corr"
    assert prop(m.properties, "ContentType") == "application/json"
    assert prop(m.properties, "PayloadFormatIndicator") == 1

    # Request/response round trip: the responder answers on the response topic.
    requester = connected(fleetmq.addr)
    requester.subscribe(topic + "/reply", 1)
    sub.publish(prop(m.properties, "ResponseTopic"), b"answer", qos=1,
                properties=publish_props(CorrelationData=prop(m.properties, "CorrelationData")))
    reply = requester.wait_messages(1)[0]
    assert reply.payload == b"answer"
    assert prop(reply.properties, "CorrelationData") == b"\x00\x01corr"
    for c in (sub, pub, requester):
        c.disconnect()


def test_invalid_utf8_with_payload_format_indicator(fleetmq):
    """A payload marked UTF-8 that is not: the server may refuse it (PUBACK 0x99, never
    forwarded) or pass it through untouched (MQTT 5 §3.3.2.3.2); nothing else."""
    topic = unique("pfi")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("pfi"))
    raw.send(rawmqtt.publish(topic, b"\xff\xfe", qos=1, pkid=1, props=[(0x01, 1)]))
    ack = raw.expect(rawmqtt.PUBACK)
    assert ack.reason in (0x00, 0x99)
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"marker", qos=1)
    before = sub.wait_payload(b"marker")
    if ack.reason == 0x99:
        assert before == []
    else:
        assert [m.payload for m in before] == [b"\xff\xfe"]
        assert prop(before[0].properties, "PayloadFormatIndicator") == 1
    raw.close()
    sub.disconnect()
    pub.disconnect()


def test_client_maximum_packet_size_respected(fleetmq):
    """A message larger than the client's Maximum Packet Size is not sent to it."""
    topic = unique("maxpkt")
    small = Client(fleetmq.addr, unique("small"), V5)
    small.connect(properties=connect_props(MaximumPacketSize=256))
    small.subscribe(topic, 1)
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"x" * 1000, qos=1)
    pub.publish(topic, b"marker", qos=1)
    assert small.wait_payload(b"marker") == []
    assert small.disconnected is None, "the small client stays connected"
    small.disconnect()
    pub.disconnect()


def test_server_maximum_packet_size_advertised(fleetmq_factory):
    broker = fleetmq_factory("--max-packet-size", "2048")
    c = Client(broker.addr, unique("mps"), V5)
    c.connect()
    assert prop(c.connack_properties, "MaximumPacketSize") == 2048
    c.disconnect()
