"""Will messages (docs/mqtt.md): sent on an abnormal close, not on a clean DISCONNECT; v5 will delay
(sent after the delay, cancelled when the client reconnects within it); DISCONNECT 0x04 asks for it."""

import time

import pytest
from paho.mqtt.reasoncodes import ReasonCode

import rawmqtt
from harness import quiet_for
from mqttc import V311, V5, Client, PacketTypes, connect_props, connected, prop, props, unique


def will_args(topic: str, payload: bytes, qos: int = 1, retain: bool = False, delay=None):
    args = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
    if delay is not None:
        args["properties"] = props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay)
    return args


@pytest.mark.parametrize("version", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
def test_will_on_abnormal_close(fleetmq, version):
    topic = unique("will")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    dying = Client(fleetmq.addr, unique("dying"), version)
    dying.connect(will=will_args(topic, b"gone"))
    dying.abort()
    msg = watcher.wait_messages(1)[0]
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"gone", 1)
    watcher.disconnect()


@pytest.mark.parametrize("version", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
def test_no_will_on_clean_disconnect(fleetmq, version):
    topic = unique("nowill")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    polite = Client(fleetmq.addr, unique("polite"), version)
    polite.connect(will=will_args(topic, b"should-not-appear"))
    polite.disconnect()
    # The will would be published while the connection closes; a marker sent afterwards from
    # another client arrives after it if it was (the router handles both in order).
    marker = connected(fleetmq.addr)
    marker.publish(topic, b"marker", qos=1)
    assert watcher.wait_payload(b"marker") == []
    watcher.disconnect()
    marker.disconnect()


def test_disconnect_with_will_message_reason_sends_will(fleetmq):
    topic = unique("will04")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    c = Client(fleetmq.addr, unique("w04"), V5)
    c.connect(will=will_args(topic, b"asked-for"))
    c.disconnect(reason_code=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    assert watcher.wait_messages(1)[0].payload == b"asked-for"
    watcher.disconnect()


def test_retained_will(fleetmq):
    topic = unique("rwill")
    dying = Client(fleetmq.addr, unique("dying"), V5)
    dying.connect(will=will_args(topic, b"offline", retain=True))
    dying.abort()
    later = connected(fleetmq.addr)
    later.subscribe(topic, 1)
    msg = later.wait_messages(1, timeout=5)[0]
    assert msg.payload == b"offline" and msg.retain
    later.publish(topic, b"", qos=1, retain=True)
    later.disconnect()


def test_will_delay(fleetmq):
    topic = unique("delayed")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    dying = Client(fleetmq.addr, unique("delay"), V5)
    dying.connect(will=will_args(topic, b"late", delay=2),
                  properties=connect_props(SessionExpiryInterval=30))
    closed_at = time.monotonic()
    dying.abort()
    msg = watcher.wait_messages(1, timeout=8)[0]
    elapsed = time.monotonic() - closed_at
    assert msg.payload == b"late"
    assert elapsed >= 1.5, f"will sent after {elapsed:.2f} s, before its 2 s delay"
    watcher.disconnect()


def test_will_delay_cancelled_by_reconnect(fleetmq):
    topic = unique("cancelled")
    client_id = unique("comeback")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    dying = Client(fleetmq.addr, client_id, V5)
    dying.connect(will=will_args(topic, b"never", delay=3),
                  properties=connect_props(SessionExpiryInterval=30))
    dying.abort()
    back = Client(fleetmq.addr, client_id, V5)
    back.connect(clean_start=False, properties=connect_props(SessionExpiryInterval=30))
    assert back.session_present
    # Wait past the delay, then a marker: the will must not have been published.
    quiet_for(lambda: watcher.messages, 4.5)
    marker = connected(fleetmq.addr)
    marker.publish(topic, b"marker", qos=1)
    assert watcher.wait_payload(b"marker") == []
    back.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    watcher.disconnect()
    marker.disconnect()


def test_will_sent_at_session_end_when_shorter_than_delay(fleetmq):
    """The will goes out when the session ends, even if the will delay is longer."""
    topic = unique("shortsession")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    dying = Client(fleetmq.addr, unique("short"), V5)
    dying.connect(will=will_args(topic, b"session-ended", delay=60),
                  properties=connect_props(SessionExpiryInterval=1))
    dying.abort()
    assert watcher.wait_messages(1, timeout=6)[0].payload == b"session-ended"
    watcher.disconnect()


def test_will_properties_passed_through(fleetmq):
    topic = unique("willprops")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    dying = Client(fleetmq.addr, unique("wp"), V5)
    will_props = props(PacketTypes.WILLMESSAGE, ContentType="application/json",
                       PayloadFormatIndicator=1, ResponseTopic=topic + "/r",
                       CorrelationData=b"c1", UserProperty=[("vehicle", "bus-12")],
                       MessageExpiryInterval=300)
    dying.connect(will={"topic": topic, "payload": b'{"status":"offline"}', "qos": 1,
                        "retain": False, "properties": will_props})
    dying.abort()
    m = watcher.wait_messages(1)[0]
    assert m.payload == b'{"status":"offline"}'
    assert prop(m.properties, "ContentType") == "application/json"
    assert prop(m.properties, "PayloadFormatIndicator") == 1
    assert prop(m.properties, "ResponseTopic") == topic + "/r"
    assert prop(m.properties, "CorrelationData") == b"c1"
    assert list(prop(m.properties, "UserProperty", [])) == [("vehicle", "bus-12")]
    assert 290 <= prop(m.properties, "MessageExpiryInterval", 0) <= 300
    watcher.disconnect()


def _raw_with_will(addr, topic: str, payload: bytes) -> rawmqtt.RawClient:
    raw = rawmqtt.RawClient(addr)
    raw.connect(unique("rawwill"), will={"topic": topic, "payload": payload, "qos": 1})
    return raw


def test_short_form_disconnects(fleetmq):
    """The v5 DISCONNECT short forms real clients send: `E0 00` is a normal disconnection (no
    will); `E0 01 04` (reason, no property length) asks for the will."""
    topic = unique("shortdisc")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(topic, 1)
    quiet = _raw_with_will(fleetmq.addr, topic, b"not-this")
    quiet.send(bytes([0xE0, 0x00]))
    quiet.wait_closed()
    loud = _raw_with_will(fleetmq.addr, topic, b"this-one")
    loud.send(bytes([0xE0, 0x01, 0x04]))
    loud.wait_closed()
    msg = watcher.wait_messages(1)[0]
    assert msg.payload == b"this-one"
    connected(fleetmq.addr).publish(topic, b"marker", qos=1)
    assert [m.payload for m in watcher.wait_payload(b"marker")] == [b"this-one"]
    watcher.disconnect()
