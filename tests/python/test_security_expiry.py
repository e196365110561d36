"""Token lifetime (docs/security.md, issue 19): what a JWT opened ends at its `exp` — MQTT v5 with
DISCONNECT 0xA0, MQTT 3.1.1 by a close, a `/ws` WebSocket with close code 1008, an SSE stream by
its end — and an MQTT v5 client that re-authenticates (AUTH 0x19, method `jwt`, the fresh token
as data) before `exp` keeps its connection; a token for someone else gets DISCONNECT 0x87.
Tokens expire ~2 s after they are made; the tests wait for the ends with deadlines."""

import struct
import time

import pytest

import rawmqtt
from bridge_util import Sse, Ws
from harness import BrokerProcess, wait_for
from mqttc import V311, V5, reason_value, unique
from security_util import AuthClient, hs256, token

SECRET = "expiry-test-secret-0123456789abcdef"
AUTH_METHOD, AUTH_DATA = 0x15, 0x16
REAUTHENTICATE, SUCCESS, NOT_AUTHORIZED, MAX_CONNECT_TIME = 0x19, 0x00, 0x87, 0xA0


@pytest.fixture(scope="module")
def broker(fleetmq_path, tmp_path_factory):
    work = tmp_path_factory.mktemp("expiry")
    b = BrokerProcess.start(fleetmq_path, ["--jwt-secret", SECRET], work)
    yield b
    b.stop()


def short_token(sub: str, seconds: int = 2):
    """A rider token expiring `seconds` from now, and that moment (Unix seconds)."""
    exp = int(time.time()) + seconds
    return hs256(SECRET, {"sub": sub, "role": "rider", "exp": exp, "vehicles": ["bus-1"]}), exp


def assert_not_before(exp: int):
    # `exp` is whole seconds: the end may come at most a scheduling hiccup early, never before.
    assert time.time() >= exp - 0.05, f"ended {exp - time.time():.2f} s before exp"


@pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])
def test_mqtt_connection_ends_at_exp(broker, protocol):
    tok, exp = short_token(unique("rider"))
    c = AuthClient(broker.addr, unique("exp"), protocol, "x", tok)
    assert reason_value(c.connect()[1]) == 0
    _, code, _ = c.wait_disconnected(timeout=20)
    assert_not_before(exp)
    if protocol == V5:
        assert reason_value(code) == MAX_CONNECT_TIME, code
    c.paho.loop_stop()


def test_websocket_closes_with_1008_at_exp(broker):
    tok, exp = short_token(unique("rider"))
    ws = Ws(broker, f"/ws?token={tok}")
    ws.send({"op": "subscribe", "id": "s", "vehicle": "bus-1"})
    ws.wait(lambda m: m.get("sub") == "s", "subscription answered while the token is valid")
    wait_for(lambda: ws.closed, 20, "WebSocket closed at exp")
    assert_not_before(exp)
    assert ws.close_status == 1008
    ws.close()


def test_sse_stream_ends_at_exp(broker):
    tok, exp = short_token(unique("rider"))
    sse = Sse(broker, f"vehicle=bus-1&token={tok}")
    assert sse.resp.status == 200
    wait_for(lambda: not sse._thread.is_alive(), 20, "SSE stream ended at exp")
    assert_not_before(exp)
    sse.close()


def raw_login(broker, tok: str) -> rawmqtt.RawClient:
    """A v5 raw client logged in with `tok` as its password."""
    body = rawmqtt.utf8("MQTT") + bytes([5, 0x02 | 0x40 | 0x80]) + struct.pack(">H", 60)
    body += rawmqtt.encode_properties(None) + rawmqtt.utf8(unique("reauth"))
    body += rawmqtt.utf8("x") + rawmqtt.utf8(tok)
    raw = rawmqtt.RawClient(broker.addr)
    raw.send(rawmqtt.packet(rawmqtt.CONNECT, 0, body))
    assert raw.expect(rawmqtt.CONNACK).reason == 0
    return raw


def auth(tok: str, method: str = "jwt") -> bytes:
    props = rawmqtt.encode_properties([(AUTH_METHOD, method), (AUTH_DATA, tok.encode())])
    return rawmqtt.packet(rawmqtt.AUTH, 0, bytes([REAUTHENTICATE]) + props)


def test_reauthentication_extends_an_mqtt_connection(broker):
    sub = unique("rider")
    tok, exp = short_token(sub)
    renewed = raw_login(broker, tok)
    control = raw_login(broker, tok)  # the same token, never renewed
    fresh = token(SECRET, sub, "rider", ttl=600, vehicles=["bus-1"])
    renewed.send(auth(fresh))
    answer = renewed.expect(rawmqtt.AUTH)
    assert answer.reason == SUCCESS and answer.props.get(AUTH_METHOD) == [b"jwt"], answer
    # The control connection ends at the old exp with 0xA0 ...
    closing = control.wait_closed(timeout=20)
    assert_not_before(exp)
    assert [p.reason for p in closing if p.type == rawmqtt.DISCONNECT] == [MAX_CONNECT_TIME]
    # ... and the renewed one is still served after it.
    renewed.send(rawmqtt.PINGREQ_BYTES)
    assert renewed.expect(rawmqtt.PINGRESP) is not None
    renewed.close()
    control.close()


@pytest.mark.parametrize("case", ["other subject", "expired", "garbage", "other method"])
def test_bad_reauthentication_disconnects(broker, case):
    sub = unique("rider")
    raw = raw_login(broker, token(SECRET, sub, "rider", ttl=600, vehicles=["bus-1"]))
    bad = {
        "other subject": token(SECRET, unique("rider"), "rider", ttl=600, vehicles=["bus-1"]),
        "expired": token(SECRET, sub, "rider", ttl=-120, vehicles=["bus-1"]),
        "garbage": "not-a-token",
        "other method": token(SECRET, sub, "rider", ttl=600, vehicles=["bus-1"]),
    }[case]
    raw.send(auth(bad, method="SCRAM-SHA-1" if case == "other method" else "jwt"))
    closing = raw.wait_closed(timeout=10)
    codes = [p.reason for p in closing if p.type == rawmqtt.DISCONNECT]
    assert codes == [0x8C if case == "other method" else NOT_AUTHORIZED], codes
    raw.close()
