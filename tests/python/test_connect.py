"""Connecting (docs/mqtt.md#connecting): 3.1.1 and 5.0 on one port, assigned client identifiers,
server keep-alive, keep-alive timeout, server DISCONNECT on shutdown, `$SYS/broker/...`
statistics."""

import rawmqtt
from mqttc import (V311, V5, Client, connect_props, connected, prop, reason_value, unique,
                   wait_for)


def test_v311_and_v5_connect_on_one_port(fleetmq):
    old = Client(fleetmq.addr, unique("v311"), V311)
    flags, code, _ = old.connect()
    assert reason_value(code) == 0
    new = Client(fleetmq.addr, unique("v5"), V5)
    flags, code, _ = new.connect()
    assert reason_value(code) == 0
    assert not flags.session_present
    # Both can talk to each other through the broker.
    topic = unique("mixed")
    new.subscribe(topic, 1)
    old.publish(topic, b"from-311", qos=1)
    assert new.wait_messages(1)[0].payload == b"from-311"
    old.disconnect()
    new.disconnect()


def test_assigned_client_identifier_for_empty_id(fleetmq):
    client = Client(fleetmq.addr, "", V5)
    _, code, properties = client.connect()
    assert reason_value(code) == 0
    assigned = prop(properties, "AssignedClientIdentifier")
    assert assigned, "v5 CONNACK for an empty client id must carry an Assigned Client Identifier"
    other = Client(fleetmq.addr, "", V5)
    other.connect()
    assert prop(other.connack_properties, "AssignedClientIdentifier") != assigned
    client.disconnect()
    other.disconnect()


def test_v311_empty_client_id_with_clean_session(fleetmq):
    client = Client(fleetmq.addr, "", V311)
    _, code, _ = client.connect(clean_start=True)
    assert reason_value(code) == 0
    client.disconnect()


def test_server_keep_alive(fleetmq_factory):
    broker = fleetmq_factory("--max-keepalive", "10")
    client = Client(broker.addr, unique("ka"), V5)
    client.connect(keepalive=60)
    assert prop(client.connack_properties, "ServerKeepAlive") == 10
    client.disconnect()
    # A client within the limit keeps its own keep-alive (no Server Keep Alive, or the same value).
    modest = Client(broker.addr, unique("ka"), V5)
    modest.connect(keepalive=5)
    assert prop(modest.connack_properties, "ServerKeepAlive", 5) == 5
    modest.disconnect()


def test_keep_alive_timeout_closes_and_fires_will(fleetmq):
    watcher = connected(fleetmq.addr)
    will_topic = unique("ka-will")
    watcher.subscribe(will_topic, 1)
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("silent"), keepalive=1,
                will={"topic": will_topic, "payload": b"timed-out", "qos": 1})
    # Send nothing: the server must close us after 1.5 x keep-alive.
    packets = raw.wait_closed(timeout=8)
    assert all(p.type == rawmqtt.DISCONNECT for p in packets)
    if packets:
        assert packets[0].reason == 0x8D, "v5 keep-alive timeout reason is 0x8D"
    assert watcher.wait_messages(1)[0].payload == b"timed-out"
    watcher.disconnect()


def test_shutdown_sends_0x8b_and_exits_zero(fleetmq_factory):
    broker = fleetmq_factory()
    raw = rawmqtt.RawClient(broker.addr)
    raw.connect(unique("shutdown"))
    broker.proc.send_signal(15)
    packets = raw.wait_closed(timeout=10)
    assert packets and packets[0].type == rawmqtt.DISCONNECT, "v5 client must get DISCONNECT"
    assert packets[0].reason == 0x8B
    # Wait for the exit without signalling again (a second SIGTERM means "exit at once").
    assert broker.proc.wait(10) == 0


def test_sys_topics_published_and_not_matched_by_wildcard(fleetmq):
    everything = connected(fleetmq.addr)
    everything.subscribe("#", 0)
    everything.subscribe("+/broker/#", 0)
    client = connected(fleetmq.addr)
    client.subscribe("$SYS/broker/#", 0)
    # A periodic publication (not a retained copy sent on subscribe) within one 10 s period.
    live = wait_for(lambda: [m for m in client.messages if not m.retain], 12,
                    "a periodic $SYS/broker/... publication")
    assert all(m.topic.startswith("$SYS/broker/") for m in client.messages)
    assert live[0].payload, "statistics have a value"
    # A leading wildcard does not match $-topics: `everything` saw none of them.
    everything.publish(unique("sys-marker"), b"marker", qos=1)
    before = everything.wait_payload(b"marker")
    assert not [m.topic for m in before if m.topic.startswith("$")]
    client.disconnect()
    everything.disconnect()


def test_v5_connect_properties_accepted(fleetmq):
    client = Client(fleetmq.addr, unique("props"), V5)
    _, code, properties = client.connect(properties=connect_props(
        SessionExpiryInterval=0, ReceiveMaximum=10, MaximumPacketSize=65536,
        TopicAliasMaximum=5, UserProperty=[("k", "v")]))
    assert reason_value(code) == 0
    # The server tells us its limits.
    assert prop(properties, "ReceiveMaximum", 65535) >= 1
    client.disconnect()


def test_v5_connack_advertises_supported_features(fleetmq):
    """Everything docs/mqtt.md#connecting promises is advertised as available (absent means
    available)."""
    client = Client(fleetmq.addr, unique("caps"), V5)
    _, _, p = client.connect()
    assert prop(p, "MaximumQoS", 2) == 2
    assert prop(p, "RetainAvailable", 1) == 1
    assert prop(p, "WildcardSubscriptionAvailable", 1) == 1
    assert prop(p, "SubscriptionIdentifierAvailable", 1) == 1
    assert prop(p, "SharedSubscriptionAvailable", 1) == 1
    assert prop(p, "ReceiveMaximum", 65535) == 1024, "--receive-maximum default"
    assert prop(p, "MaximumPacketSize") == 1024 * 1024, "--max-packet-size default 1 MiB"
    client.disconnect()
