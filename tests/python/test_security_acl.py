"""Roles and the ACL over MQTT (docs/security.md#roles, issue 6): every role × topic kind ×
publish/subscribe checked against ONE table of expected decisions, with the reason codes (PUBACK
0x87, SUBACK 0x87, 3.1.1 SUBACK 0x80); identities from a users file (`fleetmq passwd`) and from
HS256 tokens made here by hand; expired, forged and wrong-role tokens refused at CONNECT
(0x86/0x87); a driver publishing another vehicle's location gets PUBACK 0x87 and nothing is
forwarded; repeated failed logins from one address back off (CONNACK 0x9F) and recover."""

import itertools
import json
import time

import pytest

from harness import BrokerProcess, quiet_for, wait_for
from mqttc import V311, V5, reason_value, unique
from security_util import AuthClient, hs256, location, raw_login, token, users_file

SECRET = "acl-test-secret-0123456789abcdef"
OWN = unique("bus")
OTHER = unique("bus")
USERS = [
    {"name": "drv", "password": "drv-pass", "role": "driver", "vehicle": OWN},
    {"name": "ops", "password": "ops-pass", "role": "operator"},
]

# Who logs in how: a users-file password, or an HS256 token as the MQTT password.
LOGINS = {
    "driver": ("drv", "drv-pass"),
    "driver-jwt": ("x", lambda: token(SECRET, OWN, "driver")),
    "rider": ("x", lambda: token(SECRET, unique("rider"), "rider", vehicles=[OWN])),
    "integrator": ("x", lambda: token(SECRET, unique("int"), "integrator")),
    "operator": ("ops", "ops-pass"),
}
# Both driver logins share one row of the table.
ROLE_OF = {"driver": "driver", "driver-jwt": "driver", "rider": "rider",
           "integrator": "integrator", "operator": "operator"}

DRIVER, RIDER, INTEGRATOR, OPERATOR = "driver", "rider", "integrator", "operator"

# THE table: topic kind → (topic or filter, roles allowed). Anything not listed is denied.
PUBLISH = {
    "own location": (f"fleet/{OWN}/location", {DRIVER, OPERATOR}),
    "own status": (f"fleet/{OWN}/status", {DRIVER, OPERATOR}),
    "own sos": (f"fleet/{OWN}/sos", {DRIVER, OPERATOR}),
    "own ping": (f"fleet/{OWN}/ping", {OPERATOR}),
    "other location": (f"fleet/{OTHER}/location", {OPERATOR}),
    "other status": (f"fleet/{OTHER}/status", {OPERATOR}),
    "vehicle state": (f"vehicles/{OWN}", {OPERATOR}),
    "event": (f"events/{OWN}/sos", {OPERATOR}),
    "unrelated": (f"misc/{OWN}", {OPERATOR}),
}
SUBSCRIBE = {
    "own ping": (f"fleet/{OWN}/ping", {DRIVER, OPERATOR}),
    "other ping": (f"fleet/{OTHER}/ping", {OPERATOR}),
    "own location": (f"fleet/{OWN}/location", {OPERATOR}),
    # Issue 11: a filter is granted when some topic it matches is readable (a driver reads its
    # ping, a rider its vehicle); what is not readable is filtered per message
    # (test_rider_receives_only_its_vehicles).
    "all fleet": ("fleet/#", {DRIVER, OPERATOR}),
    "own state": (f"vehicles/{OWN}", {RIDER, INTEGRATOR, OPERATOR}),
    "other state": (f"vehicles/{OTHER}", {INTEGRATOR, OPERATOR}),
    "every state +": ("vehicles/+", {RIDER, INTEGRATOR, OPERATOR}),
    "every state #": ("vehicles/#", {RIDER, INTEGRATOR, OPERATOR}),
    "own events": (f"events/{OWN}/#", {RIDER, INTEGRATOR, OPERATOR}),
    "own sos event": (f"events/{OWN}/sos", {RIDER, INTEGRATOR, OPERATOR}),
    "other events": (f"events/{OTHER}/#", {INTEGRATOR, OPERATOR}),
    "every event": ("events/#", {RIDER, INTEGRATOR, OPERATOR}),
    "other vehicle only": (f"+/{OTHER}", {INTEGRATOR, OPERATOR}),
    "$SYS": ("$SYS/#", {OPERATOR}),
    "everything": ("#", {DRIVER, RIDER, INTEGRATOR, OPERATOR}),
}

_ts = itertools.count(int(time.time() * 1000))


def payload(note: str) -> bytes:
    """A valid location with a strictly increasing `ts` (no duplicate) and a marker to spot."""
    return json.dumps({"lat": -16.9203, "lon": 145.7710, "ts": next(_ts), "note": note}).encode()


@pytest.fixture(scope="module")
def broker(fleetmq_path, tmp_path_factory):
    work = tmp_path_factory.mktemp("acl")
    users = users_file(fleetmq_path, work / "users.toml", USERS)
    b = BrokerProcess.start(fleetmq_path, ["--users", users, "--jwt-secret", SECRET], work)
    yield b
    b.stop()


def login(broker, who: str, protocol: int = V5) -> AuthClient:
    user, password = LOGINS[who]
    c = AuthClient(broker.addr, unique(who), protocol, user,
                   password() if callable(password) else password)
    _, code, _ = c.connect()
    assert reason_value(code) == 0, f"{who} could not log in: {code}"
    return c


@pytest.fixture(scope="module")
def watcher(broker):
    """An operator that sees every (non-$SYS) message, to prove denied ones went nowhere."""
    c = login(broker, "operator")
    assert [reason_value(r) for r in c.subscribe("#", 1)[0]] == [1]
    yield c
    c.disconnect()


@pytest.mark.parametrize("who", list(LOGINS))
def test_publish_matrix(broker, watcher, who):
    c = login(broker, who)
    role = ROLE_OF[who]
    wrong = []
    denied_notes = []
    for kind, (topic, allowed) in PUBLISH.items():
        note = unique(f"{who}-{kind.replace(' ', '-')}")
        code = reason_value(c.publish(topic, payload(note), qos=1)[0])
        expected_allowed = role in allowed
        if expected_allowed and code >= 0x80:
            wrong.append(f"publish {kind} ({topic}): expected success, got 0x{code:02x}")
        if not expected_allowed:
            denied_notes.append(note)
            if code != 0x87:
                wrong.append(f"publish {kind} ({topic}): expected 0x87, got 0x{code:02x}")
    assert not wrong, f"{who}:\n" + "\n".join(wrong)
    # Nothing denied reached anyone: a marker published afterwards bounds the wait.
    marker = unique("marker").encode()
    login(broker, "operator").publish(f"misc/{unique('m')}", marker, qos=1)
    before = watcher.wait_payload(marker, 10)
    leaked = [m.topic for m in before if any(n.encode() in m.payload for n in denied_notes)]
    assert not leaked, f"denied publishes were forwarded on {leaked}"
    c.disconnect()


@pytest.mark.parametrize("who", list(LOGINS))
def test_subscribe_matrix(broker, who):
    c = login(broker, who)
    role = ROLE_OF[who]
    wrong = []
    for kind, (flt, allowed) in SUBSCRIBE.items():
        codes, _ = c.subscribe(flt, 1)
        code = reason_value(codes[0])
        expected = 1 if role in allowed else 0x87
        if code != expected:
            wrong.append(f"subscribe {kind} ({flt}): expected 0x{expected:02x}, got 0x{code:02x}")
    assert not wrong, f"{who}:\n" + "\n".join(wrong)
    c.disconnect()


def test_subscribe_denied_v311_is_0x80(broker):
    c = login(broker, "rider", V311)
    codes, _ = c.subscribe([(f"vehicles/{OTHER}", 1), (f"vehicles/{OWN}", 1)])
    assert [reason_value(x) for x in codes] == [0x80, 1]
    c.disconnect()


def test_rider_receives_only_its_vehicles(broker):
    """The decisions hold for delivery too: a rider subscribed to its vehicle's state, to every
    vehicle and to `#` (granted since issue 11) gets its vehicle's state when the driver
    reports, and nothing else: every message is checked against its rights."""
    rider = login(broker, "rider")
    codes, _ = rider.subscribe([(f"vehicles/{OWN}", 1), ("vehicles/+", 1), ("#", 1)])
    assert [reason_value(c) for c in codes] == [1, 1, 1]
    driver = login(broker, "driver")
    assert reason_value(driver.publish(f"fleet/{OWN}/location", location(), qos=1)[0]) < 0x80
    state = wait_for(lambda: rider.payloads(f"vehicles/{OWN}"), 10, "own vehicle state")
    assert json.loads(state[-1])["vehicle"] == OWN
    operator = login(broker, "operator")
    for topic in (f"vehicles/{OTHER}", f"events/{OTHER}/sos", f"fleet/{OWN}/ping", "misc/x"):
        assert reason_value(operator.publish(topic, b"not for riders", qos=1)[0]) == 0
    marker = unique("marker").encode()
    operator.publish(f"events/{OWN}/note", marker, qos=1)
    before = rider.wait_payload(marker, 10)
    # Its own vehicle's state and events (`online`) only.
    assert {m.topic for m in before} - {f"vehicles/{OWN}", f"events/{OWN}/online"} == set()
    assert all(m.payload != b"not for riders" for m in before)
    operator.disconnect()
    rider.disconnect()
    driver.disconnect()


def test_driver_cannot_report_for_another_vehicle(broker, watcher):
    driver = login(broker, "driver")
    other = unique("bus")
    code = reason_value(driver.publish(f"fleet/{other}/location", location(), qos=1)[0])
    assert code == 0x87
    quiet_for(lambda: [m.topic for m in watcher.messages
                       if other in m.topic], 1.0)
    driver.disconnect()


def connack_code(broker, user, password, protocol=V5) -> int:
    c = AuthClient(broker.addr, unique("jwt"), protocol, user, password)
    _, code, _ = c.connect()
    value = reason_value(code)
    if value == 0:
        c.disconnect()
    return value


def test_bad_tokens_are_refused(broker):
    now = int(time.time())
    expired = hs256(SECRET, {"sub": OWN, "role": "driver", "exp": now - 120})
    forged = hs256("not-the-secret", {"sub": OWN, "role": "operator", "exp": now + 600})
    unknown_role = hs256(SECRET, {"sub": OWN, "role": "superuser", "exp": now + 600})
    tampered = token(SECRET, OWN, "driver")
    head, body, sig = tampered.split(".")
    escalated = hs256("x", {"sub": OWN, "role": "operator", "exp": now + 600}).split(".")[1]
    assert connack_code(broker, "x", expired) == 0x86
    assert connack_code(broker, "x", forged) == 0x86
    assert connack_code(broker, "x", unknown_role) in (0x86, 0x87)
    assert connack_code(broker, "x", f"{head}.{escalated}.{sig}") == 0x86
    # 3.1.1: "bad user name or password" is return code 4.
    assert raw_login(broker.addr, "x", expired, v5=False) == 4
    # The untouched token is fine: the refusals were about the token, not the client.
    assert connack_code(broker, "x", tampered) == 0
    # Users file: wrong password; no credentials at all.
    assert connack_code(broker, "drv", "wrong") == 0x86
    assert connack_code(broker, None, None) in (0x86, 0x87)


def test_failed_logins_back_off(fleetmq_factory):
    """After ten failed logins from one address the next attempts are refused with 0x9F, even
    with good credentials, until the back-off (1 s at first) has passed."""
    b = fleetmq_factory("--jwt-secret", SECRET)
    good = token(SECRET, "ops", "operator")
    bad = hs256("wrong-secret", {"sub": "ops", "role": "operator", "exp": int(time.time()) + 600})
    # Raw sockets: a library's reconnect loop would take longer than the back-off.
    assert raw_login(b.addr, "x", good) == 0
    codes = [raw_login(b.addr, "x", bad) for _ in range(11)]
    assert codes == [0x86] * 11, codes
    assert raw_login(b.addr, "x", good) == 0x9F
    assert raw_login(b.addr, "x", good, v5=False) == 3, "3.1.1: server unavailable"
    wait_for(lambda: raw_login(b.addr, "x", good) == 0, 10, "the back-off to end")
    # Success forgets the failures: one more failure does not block again.
    assert raw_login(b.addr, "x", bad) == 0x86
    assert raw_login(b.addr, "x", good) == 0
