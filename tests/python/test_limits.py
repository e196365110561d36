"""Limits and negative acknowledgements (docs/configuration.md#settings, docs/mqtt.md#limits,
docs/security.md#abuse-limits): --max-connections, --max-publish-rate (v5 DISCONNECT 0x96),
--max-connect-rate, invalid subscription filters (SUBACK 0x8F with a reason string), and protocol
errors in SUBSCRIBE answered with DISCONNECT 0x82."""

import rawmqtt
from harness import wait_for
from mqttc import V5, Client, connected, reason_value, unique


def connack_of(addr, v5=True):
    raw = rawmqtt.RawClient(addr, v5=v5)
    raw.send(rawmqtt.connect(unique("lim"), v5=v5))
    return raw, raw.recv(5)


def test_max_connections(fleetmq_factory):
    broker = fleetmq_factory("--max-connections", "2")
    first = connected(broker.addr)
    second = connected(broker.addr)
    raw, connack = connack_of(broker.addr)
    # Refused: CONNACK 0x97 (quota exceeded) / 0x9F (connection rate) or closed outright.
    if connack is not None:
        assert connack.type == rawmqtt.CONNACK and connack.reason >= 0x80, connack
    raw.wait_closed(5)
    # Room again once one leaves.
    first.disconnect()
    third = wait_for(lambda: _try_connect(broker.addr), 5, "a free connection slot")
    third.disconnect()
    second.disconnect()


def _try_connect(addr):
    c = Client(addr, unique("slot"), V5)
    try:
        _, code, _ = c.connect(timeout=2)
        if reason_value(code) == 0:
            return c
    except AssertionError:
        pass
    # Stop paho's automatic reconnects, which would otherwise hold a slot later.
    c.paho.disconnect()
    c.paho.loop_stop()
    return None


def test_max_publish_rate_disconnects_0x96(fleetmq_factory):
    broker = fleetmq_factory("--max-publish-rate", "20")
    raw = rawmqtt.RawClient(broker.addr)
    raw.connect(unique("chatty"))
    # Far over 20 per second in one burst.
    raw.send(b"".join(rawmqtt.publish(unique("rate"), b"x") for _ in range(500)))
    packets = raw.wait_closed(10)
    assert packets and packets[-1].type == rawmqtt.DISCONNECT, packets
    assert packets[-1].reason == 0x96, f"Message rate too high, got 0x{packets[-1].reason:02x}"
    # A client within the rate is fine.
    calm = connected(broker.addr)
    for i in range(5):
        calm.publish(unique("calm"), b"x", qos=1)
    assert calm.disconnected is None
    calm.disconnect()


def test_max_connect_rate(fleetmq_factory):
    broker = fleetmq_factory("--max-connect-rate", "5")
    refused = 0
    clients = []
    for _ in range(30):
        raw, connack = connack_of(broker.addr)
        clients.append(raw)
        if connack is None or connack.reason != 0:
            refused += 1
    assert refused >= 15, f"only {refused} of 30 connections in a burst were refused at 5/s"
    for raw in clients:
        raw.close()


def _subscribe_invalid(addr, flt: str, v5: bool = True):
    """SUBACK codes for [flt, "ok/+"], or the DISCONNECT reason if the server treats the filter as
    a malformed packet instead (MQTT 5 allows either; 0x87 "not authorized" is wrong)."""
    raw = rawmqtt.RawClient(addr, v5=v5)
    raw.connect(unique("badfilter"))
    raw.send(rawmqtt.subscribe(1, [(flt, 1), ("ok/+", 1)], v5=v5))
    p = raw.recv(5)
    assert p is not None, "no answer to an invalid filter"
    if p.type == rawmqtt.SUBACK:
        raw.send(rawmqtt.PINGREQ_BYTES)
        raw.expect(rawmqtt.PINGRESP)
        return p
    assert p.type == rawmqtt.DISCONNECT and p.reason in (0x81, 0x82), p
    raw.wait_closed(5)
    return None


def test_invalid_subscription_filters(fleetmq):
    # Raw: paho refuses to send these.
    for flt in ("a/#/b", "a+/b", "$share/g/", "$share/g"):
        suback = _subscribe_invalid(fleetmq.addr, flt)
        if suback is not None:
            assert suback.codes == [0x8F, 1], f"{flt!r}: Topic Filter invalid, got {suback.codes}"
            assert suback.prop(rawmqtt.REASON_STRING), "a reason string on the negative SUBACK"


def test_invalid_subscription_filter_v311(fleetmq):
    suback = _subscribe_invalid(fleetmq.addr, "a/#/b", v5=False)
    if suback is not None:
        assert suback.codes == [0x80, 1]


def test_no_local_on_shared_subscription_is_protocol_error(fleetmq):
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("nlshare"))
    raw.send(rawmqtt.subscribe(1, [(f"$share/g/{unique('t')}", 0x01 | 0x04)]))
    packets = raw.wait_closed(5)
    assert packets and packets[-1].type == rawmqtt.DISCONNECT
    assert packets[-1].reason in (0x82, 0x8C), f"0x{packets[-1].reason:02x}"


def test_subscription_identifier_zero_is_protocol_error(fleetmq):
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("sid0"))
    raw.send(rawmqtt.subscribe(1, [(unique("t"), 1)], props=[(rawmqtt.SUBSCRIPTION_ID, 0)]))
    packets = raw.wait_closed(5)
    assert packets and packets[-1].type == rawmqtt.DISCONNECT
    assert packets[-1].reason in (0x81, 0x82)


def test_unsupported_authentication_method(fleetmq):
    """Enhanced authentication is not offered: CONNECT with an Authentication Method gets
    CONNACK 0x8C (bad authentication method) and the connection is closed."""
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.send(rawmqtt.connect(unique("scram"), props=[(0x15, "SCRAM-SHA-1")]))
    connack = raw.recv(5)
    assert connack is not None and connack.type == rawmqtt.CONNACK
    assert connack.reason == 0x8C, f"0x{connack.reason:02x}"
    raw.wait_closed(5)


def test_auth_packet_without_method_is_protocol_error(fleetmq):
    """AUTH `F0 00` (the short form the codec must read) on a connection that never negotiated
    an authentication method: DISCONNECT 0x82 (protocol error) or 0x8C (bad authentication
    method), with the connection closed."""
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("auth"))
    raw.send(bytes([0xF0, 0x00]))
    packets = raw.wait_closed(5)
    assert packets and packets[-1].type == rawmqtt.DISCONNECT
    assert packets[-1].reason in (0x82, 0x8C), f"0x{packets[-1].reason:02x}"
