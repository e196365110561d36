"""Rider scope on every channel (docs/security.md, issue 19): ONE table — role × channel × resource
— read from the README (between the `access-matrix` markers) and measured cell by cell with real
clients: paho over MQTT, `websocket-client` on `/ws`, `http.client` for SSE and `requests` for REST.
Vehicle `bus` runs trip T0, then T1, then T2, with `--trip-ttl` short enough that T0's data expires
while the test watches; every role's token is an HS256 JWT made here."""

import json
import pathlib
import re
import time
from typing import Dict, List

import pytest
import requests

from bridge_util import Sse, Ws, is_update
from harness import BrokerProcess, RedisProcess, quiet_for, wait_for
from mqttc import V5, reason_value, unique
from security_util import LAT, LON, AuthClient, token

SECRET = "scope-test-secret-0123456789abcdef"
TRIP_TTL_S = 8
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"

# The README's row labels → the token claims of that role (the vehicle is `bus` in the README).
ROLES = {
    "operator": dict(role="operator"),
    "integrator": dict(role="integrator"),
    "rider, `vehicles: [bus]`": dict(role="rider", vehicles=["{bus}"]),
    "rider, `trips: [T2]` (running)": dict(role="rider", trips=["{T2}"]),
    "rider, `trips: [T1]` (ended < TTL ago)": dict(role="rider", trips=["{T1}"]),
    "rider, `trips: [T0]` (ended > TTL ago)": dict(role="rider", trips=["{T0}"]),
    "rider, `trips: [T9]` (another trip)": dict(role="rider", trips=["{T9}"]),
    "driver of `bus`": dict(role="driver", sub="{bus}"),
}
COLUMNS = ["MQTT `vehicles/bus`", "MQTT `events/bus/…`", "`/ws` updates", "SSE updates",
           "REST state", "`/track`: fixes of `T2`", "`/track`: fixes of `T0`, `T1`"]


def readme_table() -> Dict[str, Dict[str, str]]:
    """{role: {column: cell}} from the README's access matrix."""
    text = README.read_text()
    body = text.split("<!-- access-matrix:begin -->")[1].split("<!-- access-matrix:end -->")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in body.strip().splitlines()]
    header, rows = rows[0], [r for r in rows[2:] if r]
    assert header[1:] == COLUMNS, f"README columns changed: {header}"
    return {r[0]: dict(zip(header[1:], r[1:])) for r in rows}


def cell(allowed: bool) -> str:
    return "yes" if allowed else "no"


@pytest.fixture(scope="module", params=["memory", "redis"])
def broker(request, fleetmq_path, tmp_path_factory):
    """`/track` from the bridge's in-memory ring, and from the Redis stream with `--redis`."""
    work = tmp_path_factory.mktemp("scope")
    redis = RedisProcess.start(work) if request.param == "redis" else None
    extra = ["--redis", redis.url] if redis else []
    b = BrokerProcess.start(fleetmq_path, ["--jwt-secret", SECRET,
                                           "--trip-ttl", f"{TRIP_TTL_S}s", *extra], work)
    yield b
    b.stop()
    if redis:
        redis.stop()


class Names:
    def __init__(self):
        self.bus = unique("bus")
        self.trips = {t: unique(t) for t in ("T0", "T1", "T2", "T9")}

    def fill(self, value):
        subs = {"bus": self.bus, **self.trips}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value.format(**subs) if isinstance(value, str) else value

    def token(self, claims: dict, ttl: int = 600) -> str:
        claims = {k: self.fill(v) for k, v in claims.items()}
        sub = claims.pop("sub", unique("user"))
        return token(SECRET, sub, claims.pop("role"), ttl=ttl, **claims)


class BusDriver:
    """Publishes `bus`'s fixes (with a trip) over MQTT as its driver."""

    def __init__(self, broker, names: Names):
        self.names = names
        self.client = AuthClient(broker.addr, unique("drv"), V5, "x",
                                 names.token(dict(role="driver", sub="{bus}")))
        assert reason_value(self.client.connect()[1]) == 0
        self.ts = int(time.time() * 1000) - 3600_000
        self.n = 0

    def fix(self, trip: str) -> int:
        # 61 s and ~250 m apart: each fix is forwarded as sent (no jitter, no smoothing).
        self.ts += 61_000
        self.n += 1
        body = {"lat": LAT + 0.00225 * (self.n % 8), "lon": LON, "ts": self.ts, "speed": 4.0,
                "trip": self.names.trips[trip]}
        code, _ = self.client.publish(f"fleet/{self.names.bus}/location", json.dumps(body), qos=1)
        assert reason_value(code) == 0
        return self.ts


def rest(broker, path: str, tok: str) -> requests.Response:
    return requests.get(f"http://{broker.http_host}:{broker.http_port}{path}",
                        headers={"Authorization": f"Bearer {tok}"}, timeout=10)


def track_trips(broker, names: Names, tok: str) -> List[str]:
    """The trip names (T0…) of the fixes `/track` gives this token; [] for a 404."""
    r = rest(broker, f"/api/v1/vehicles/{names.bus}/track", tok)
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    back = {v: k for k, v in names.trips.items()}
    return [back.get(f.get("trip"), "?") for f in r.json()["fixes"]]


def earlier_cell(trips: List[str]) -> str:
    earlier = sorted(set(trips) & {"T0", "T1"})
    return {(): "no", ("T0", "T1"): "yes"}.get(tuple(earlier), " ".join(f"`{t}` only" for t in earlier))


def test_access_matrix_matches_the_readme(broker):
    expected = readme_table()
    assert set(expected) == set(ROLES), "README rows and the test's roles differ"
    names = Names()
    tokens = {role: names.token(claims) for role, claims in ROLES.items()}
    t0_rider = tokens["rider, `trips: [T0]` (ended > TTL ago)"]
    driver = BusDriver(broker, names)
    driver.fix("T0")
    driver.fix("T0")
    driver.fix("T1")  # T0 ends here
    operator = tokens["operator"]
    wait_for(lambda: len(track_trips(broker, names, operator)) == 3, 10, "3 fixes stored")
    # T0's fixes stay readable to its riders for the TTL, then not.
    assert track_trips(broker, names, t0_rider) == ["T0", "T0"]
    wait_for(lambda: track_trips(broker, names, t0_rider) == [], TRIP_TTL_S + 20,
             "T0 unreadable after --trip-ttl")
    driver.fix("T1")
    driver.fix("T2")  # T1 ends here: measure its riders' REST cells within the TTL
    wait_for(lambda: track_trips(broker, names, operator)[-1:] == ["T2"], 10, "T2 stored")
    got: Dict[str, Dict[str, str]] = {role: {} for role in ROLES}
    for role, tok in tokens.items():
        trips = track_trips(broker, names, tok)
        got[role]["`/track`: fixes of `T2`"] = cell("T2" in trips)
        got[role]["`/track`: fixes of `T0`, `T1`"] = earlier_cell(trips)
        claims = ROLES[role]
        if "trips" in claims:
            own = {t.strip("{}") for t in claims["trips"]}
            assert set(trips) <= own, f"{role} read fixes of another trip: {trips}"
        state = rest(broker, f"/api/v1/vehicles/{names.bus}", tok)
        assert state.status_code in (200, 404), state.text
        got[role]["REST state"] = cell(state.status_code == 200)
    # The live channels, opened now that `bus` runs T2.
    mqtt, ws, sse = {}, {}, {}
    for role, tok in tokens.items():
        c = AuthClient(broker.addr, unique("live"), V5, "x", tok)
        assert reason_value(c.connect()[1]) == 0
        codes, _ = c.subscribe([(f"vehicles/{names.bus}", 1), (f"events/{names.bus}/#", 1)])
        mqtt[role] = c
        ws[role] = Ws(broker, f"/ws?token={tok}")
        ws[role].send({"op": "subscribe", "id": "s", "vehicle": names.bus})
        sse[role] = Sse(broker, f"vehicle={names.bus}&token={tok}")
    for w in ws.values():  # the subscription is in place (snapshot or refusal) before the fix
        w.wait(lambda m: m.get("sub") == "s" or m.get("type") == "error", "subscribe answer")
    wait_for(lambda: all(s.resp.status in (200, 401, 403) for s in sse.values()), 10, "SSE")
    operator = AuthClient(broker.addr, unique("op"), V5, "x", operator)
    assert reason_value(operator.connect()[1]) == 0
    ts = driver.fix("T2")
    marker = unique("note").encode()
    assert reason_value(operator.publish(f"events/{names.bus}/note", marker, qos=1)[0]) == 0

    def live(role):
        state = any(m.topic == f"vehicles/{names.bus}" and json.loads(m.payload)["ts"] == ts
                    for m in list(mqtt[role].messages))
        event = any(m.payload == marker for m in list(mqtt[role].messages))
        wsu = ws[role].find(lambda m: is_update(m, names.bus, ts)) is not None
        sseu = sse[role].find(lambda e: is_update(e[1], names.bus, ts)) is not None
        return [state, event, wsu, sseu]

    allowed = [r for r in ROLES if expected[r]["MQTT `vehicles/bus`"] == "yes"]
    wait_for(lambda: all(all(live(r)) for r in allowed), 15, "allowed roles' deliveries")
    denied = [r for r in ROLES if r not in allowed]
    quiet_for(lambda: any(any(live(r)) for r in denied), 1.0)
    for role in ROLES:
        for col, ok in zip(COLUMNS[:4], live(role)):
            got[role][col] = cell(ok)
    for role in denied:  # nothing of `bus` at all, not even a snapshot or a retained state
        assert not mqtt[role].messages, (role, [m.topic for m in mqtt[role].messages])
        assert not ws[role].find(lambda m: names.bus in json.dumps(m)), role
    assert got == expected
    for role in ROLES:
        mqtt[role].disconnect()
        ws[role].close()
        sse[role].close()
    operator.disconnect()
    driver.client.disconnect()
