"""Issue 3's end-to-end test: a simulated bus on a real Cairns route, through the running broker.

The trace is generated here, in Python, from the route geometry the broker itself serves at
`/api/v1/routes`: one shape walked from its first point at ~10 m/s with a fix a second (seeded
Gaussian noise, sigma 4 m), a 300 m sideways detour over a stretch, a dwell at a stop with
stationary jitter, duplicate fixes (the same payload re-sent) and invalid fixes (lat 95, no ts,
broken JSON) mixed in. Device times start 20 minutes in the past and advance one second per fix
(the pipeline derives speeds from device time; docs/pipeline.md#validate allows at most 30 s in
the future and 24 h in the past). Everything is published with paho v5 at QoS 1 while a second paho client
subscribed to `vehicles/#` and `events/#` watches what the broker republishes.
"""

import json
import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pytest

from e2e_util import Polyline, Shape, family, get_json, load_shapes, metrics, rejected
from harness import wait_for
from mqttc import connected, prop, reason_value

SEED = 20141121
SPEED = 10.0  # m/s along the route
NOISE_M = 4.0
WALK_M = 5000.0  # how much of the shape the bus drives
DETOUR_OUT_M = 300.0  # sideways
RAMP_M = 200.0  # arc over which the bus moves out (and back)
HOLD_M = 300.0  # arc driven fully 300 m out
DWELL_FIXES = 8
STOP_RADIUS_M = 30.0  # docs/pipeline.md#events default
PAYLOAD_FORMAT_INVALID = 0x99


@dataclass
class Sent:
    """One publish of the trace and what the pipeline must make of it."""
    kind: str  # "fix" (must be forwarded), "duplicate", "jitter", "invalid"
    payload: bytes
    ts: Optional[int] = None
    arc: float = 0.0
    offset_m: float = 0.0  # true sideways offset from the route
    field: Optional[str] = None  # invalid: the field the reason string must name
    reason: Optional[str] = None  # invalid: the metrics label


@dataclass
class Trace:
    shape: Shape
    sent: List[Sent]
    detour: Tuple[float, float]  # arc range where the bus is off the line
    dwell_stop: str

    def of(self, kind: str) -> List[Sent]:
        return [s for s in self.sent if s.kind == kind]


def offset_at(s: float, d0: float) -> float:
    """Sideways offset of the detour starting at arc d0: ramp out, hold, ramp back."""
    if s <= d0 or s >= d0 + 2 * RAMP_M + HOLD_M:
        return 0.0
    if s < d0 + RAMP_M:
        return DETOUR_OUT_M * (s - d0) / RAMP_M
    if s <= d0 + RAMP_M + HOLD_M:
        return DETOUR_OUT_M
    return DETOUR_OUT_M * (d0 + 2 * RAMP_M + HOLD_M - s) / RAMP_M


def detour_start(shape: Shape, siblings: List[Polyline], walk: float) -> Optional[float]:
    """The first arc where a detour really leaves every line of the route (the detour must be
    far from other parts of the route and from its other shapes, or it would not be one)."""
    line = shape.line
    for d0 in range(1800, int(walk - 2 * RAMP_M - HOLD_M - 600), 100):
        ok, far, prev_d, prev_p = True, 0, 0.0, None
        end = d0 + 2 * RAMP_M + HOLD_M
        s = float(d0)
        while s <= end and ok:
            off = offset_at(s, d0)
            x, y = line.at(s)
            nx, ny = line.normal(s)
            p = (x + off * nx, y + off * ny)
            d = min(pl.distance(p) for pl in siblings)
            # The distance to the route must follow the intended offset closely, and the
            # offset path must be drivable (no bend that squeezes or stretches it).
            ok = abs(d - off) < 25.0 or (off >= DETOUR_OUT_M and d >= 0.85 * DETOUR_OUT_M)
            if prev_p is not None:
                ok = ok and 5.0 <= math.hypot(p[0] - prev_p[0], p[1] - prev_p[1]) <= 30.0
            far += off >= DETOUR_OUT_M
            prev_d, prev_p = d, p
            s += SPEED
        if ok and far >= 10 and prev_d < 1.0:
            return float(d0)
    return None


def fix_payload(vehicle_route: str, lat: float, lon: float, ts: int, speed: float,
                seq: int) -> bytes:
    return json.dumps({"lat": round(lat, 7), "lon": round(lon, 7), "ts": ts,
                       "speed": round(speed, 2), "accuracy": 5, "route": vehicle_route,
                       "seq": seq}).encode()


def build_trace(routes_geojson: dict, start_ts: int) -> Trace:
    rng = random.Random(SEED)
    frame, shapes = load_shapes(routes_geojson)
    shape, d0 = None, None
    # The shape with the most stops along the walk (deterministic: ties by id) whose geometry
    # allows a clean detour.
    in_walk = lambda shp: len([s for s in shp.stops if 0 < s.arc < WALK_M])
    for cand in sorted(shapes, key=lambda s: (-in_walk(s), s.route_id, s.shape_id)):
        if cand.line.length < WALK_M + 100 or in_walk(cand) < 8:
            continue
        siblings = [s.line for s in shapes if s.route_id == cand.route_id]
        d0 = detour_start(cand, siblings, WALK_M)
        if d0 is not None:
            shape = cand
            break
    assert shape is not None, "no bundled route has a stretch where a 300 m detour leaves it"
    line = shape.line
    detour = (d0, d0 + 2 * RAMP_M + HOLD_M)
    dwell = next(s for s in shape.stops if 600 <= s.arc <= d0 - 400)

    sent: List[Sent] = []
    ts, seq = start_ts, 0
    last_fix: Optional[Sent] = None
    last_true: Optional[Tuple[float, float]] = None
    last_raw: Tuple[float, float] = (0.0, 0.0)
    dwelled = False
    invalid_every = {37: "lat", 131: "ts", 219: "payload", 297: "lat", 353: "ts", 421: "payload"}
    steps = int(WALK_M // SPEED) + 1
    for i in range(steps):
        s = i * SPEED
        off = offset_at(s, d0)
        x, y = line.at(s)
        nx, ny = line.normal(s)
        true = (x + off * nx, y + off * ny)
        raw = (true[0] + rng.gauss(0, NOISE_M), true[1] + rng.gauss(0, NOISE_M))
        dt = (ts - last_fix.ts) / 1000 if last_fix else 1.0
        speed = math.hypot(true[0] - last_true[0], true[1] - last_true[1]) / dt if last_true else SPEED
        lat, lon = frame.to_geo(*raw)
        seq += 1
        fix = Sent("fix", fix_payload(shape.route_id, lat, lon, ts, speed, seq), ts, s, off)
        sent.append(fix)
        last_fix, last_true, last_raw = fix, true, raw

        if i % 23 == 11:  # the same fix again, as a device re-sending after a lost ack
            sent.append(Sent("duplicate", fix.payload, ts, s, off))
        if i in invalid_every:
            what = invalid_every[i]
            if what == "lat":
                body = json.dumps({"lat": 95.0, "lon": lon, "ts": ts + 500}).encode()
                sent.append(Sent("invalid", body, field="lat", reason="lat_out_of_range"))
            elif what == "ts":
                body = json.dumps({"lat": lat, "lon": lon, "speed": 3}).encode()
                sent.append(Sent("invalid", body, field="ts", reason="missing_field"))
            else:
                body = b'{"lat": -16.9, "lon": 145.7, "ts": '
                sent.append(Sent("invalid", body, field="payload", reason="bad_json"))
        if not dwelled and s >= dwell.arc:
            dwelled = True
            for _ in range(DWELL_FIXES):
                ts += 1000
                seq += 1
                r, a = rng.uniform(0, 4.0), rng.uniform(0, 2 * math.pi)
                jlat, jlon = frame.to_geo(last_raw[0] + r * math.cos(a), last_raw[1] + r * math.sin(a))
                sent.append(Sent("jitter", fix_payload(shape.route_id, jlat, jlon, ts,
                                                       rng.uniform(0.0, 0.3), seq), ts, s, 0.0))
        ts += 1000
    return Trace(shape, sent, detour, dwell.stop_id)


@pytest.fixture(scope="module")
def run(fleetmq):
    """Publishes the whole trace once; the tests below check different aspects of the result."""
    routes = get_json(fleetmq, "/api/v1/routes")
    start_ts = int(time.time() * 1000) - 20 * 60 * 1000
    trace = build_trace(routes, start_ts)
    vehicle = f"e2e-bus-{uuid.uuid4().hex[:8]}"
    before = metrics(fleetmq)

    watcher = connected(fleetmq.addr)
    watcher.subscribe([("vehicles/#", 1), ("events/#", 1), (f"e2e/{vehicle}/done", 1)])
    driver = connected(fleetmq.addr)
    acks = []
    for item in trace.sent:
        acks.append(driver.publish(f"fleet/{vehicle}/location", item.payload, qos=1, timeout=10))

    last_ts = trace.of("fix")[-1].ts

    def final_state_seen():
        return any(m.topic == f"vehicles/{vehicle}" and json.loads(m.payload)["ts"] == last_ts
                   for m in list(watcher.messages))
    wait_for(final_state_seen, 30, "the state of the last fix")
    marker = uuid.uuid4().hex.encode()
    watcher.publish(f"e2e/{vehicle}/done", marker, qos=1)
    received = watcher.wait_payload(marker, timeout=30)
    after = metrics(fleetmq)
    driver.disconnect()
    watcher.disconnect()

    states = [json.loads(m.payload) for m in received if m.topic == f"vehicles/{vehicle}"]
    events = [json.loads(m.payload) for m in received
              if m.topic.startswith(f"events/{vehicle}/")]
    for m in received:
        if m.topic.startswith(f"events/{vehicle}/"):
            assert m.topic == f"events/{vehicle}/{json.loads(m.payload)['kind']}"
    summary = (f"route {trace.shape.route_id} shape {trace.shape.shape_id}: "
               f"{len(trace.of('fix'))} fixes, {len(trace.of('duplicate'))} duplicates, "
               f"{len(trace.of('jitter'))} jitter, {len(trace.of('invalid'))} invalid; "
               f"detour arc {trace.detour}; {len(states)} states, "
               f"events {[e['kind'] for e in events if e['kind'] != 'stop_departure']}")
    print(summary)
    return dict(trace=trace, vehicle=vehicle, acks=acks, states=states, events=events,
                before=before, after=after)


def test_exactly_one_deviation_and_back_on_route(run):
    trace, events = run["trace"], run["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("deviation") == 1, kinds
    assert kinds.count("back_on_route") == 1, kinds
    assert kinds.index("deviation") < kinds.index("back_on_route")
    # Both happen inside the detour, and the deviation says how far off the bus is.
    fixes = trace.of("fix")
    out_ts = [f.ts for f in fixes if f.offset_m > 0]
    dev = next(e for e in events if e["kind"] == "deviation")
    back = next(e for e in events if e["kind"] == "back_on_route")
    assert min(out_ts) <= dev["ts"] <= max(out_ts), (dev, min(out_ts), max(out_ts))
    assert dev["ts"] < back["ts"] <= max(out_ts) + 10_000, back
    assert dev["off_route_m"] > 50, dev
    fully_out = [f for f in fixes if f.offset_m >= DETOUR_OUT_M]
    assert len(fully_out) >= 5
    # The states say the same: off route exactly between the two events.
    for s in run["states"]:
        expect = not (dev["ts"] <= s["ts"] < back["ts"])
        assert s["on_route"] is expect, s


def test_stop_arrivals_in_route_order(run):
    trace, events = run["trace"], run["events"]
    shape = trace.shape
    seq_of = {s.stop_id: s.sequence for s in shape.stops}
    arc_of = {s.stop_id: s.arc for s in shape.stops}
    arrivals = [e["stop_id"] for e in events if e["kind"] == "stop_arrival"]
    assert arrivals, "no stop_arrival at all"
    unknown = [a for a in arrivals if a not in seq_of]
    assert not unknown, f"arrivals at stops not on shape {shape.shape_id}: {unknown}"
    seqs = [seq_of[a] for a in arrivals]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), \
        f"arrivals out of route order: {list(zip(arrivals, seqs))}"
    # Every stop the bus clearly passes on route is arrived at: inside the walk, away from the
    # detour, and not crowded by another stop within two radii (whose circles overlap).
    lo, hi = trace.detour
    walked = trace.of("fix")[-1].arc
    must = []
    for s in shape.stops:
        crowded = any(o is not s and abs(o.arc - s.arc) < 2 * STOP_RADIUS_M + 10
                      for o in shape.stops)
        if 50 < s.arc < walked - 50 and not (lo - 150 < s.arc < hi + 150) and not crowded:
            must.append(s.stop_id)
    missing = [(m, round(arc_of[m])) for m in must if m not in arrivals]
    print(f"stops: {len(must)} clearly passed, {len(arrivals)} arrivals "
          f"({len(set(arrivals) - set(must))} more at crowded or detour-side stops)")
    assert not missing, f"stops passed without stop_arrival (id, arc m): {missing}"
    assert len(must) >= 5, must
    assert trace.dwell_stop in arrivals
    # None while off the corridor.
    off = [a for a in arrivals if lo + RAMP_M / 2 < arc_of[a] < hi - RAMP_M / 2]
    assert not off, f"stop_arrival during the detour: {off}"


def test_progress_never_decreases_on_route(run):
    states = run["states"]
    on = [s for s in states if s.get("on_route")]
    assert len(on) > 100
    for a, b in zip(on, on[1:]):
        assert b["progress_m"] >= a["progress_m"], (a, b)
    assert on[-1]["progress_m"] > 0.8 * run["trace"].of("fix")[-1].arc
    for s in states:
        assert s["route"] == run["trace"].shape.route_id
        assert s["vehicle"] == run["vehicle"]


def test_duplicates_and_jitter_never_forwarded(run):
    trace, states = run["trace"], run["states"]
    fixes = trace.of("fix")
    assert len(trace.of("duplicate")) >= 10 and len(trace.of("jitter")) == DWELL_FIXES
    ts = [s["ts"] for s in states]
    assert len(ts) == len(set(ts)), "a state's ts repeats"
    assert ts == sorted(ts)
    assert ts == [f.ts for f in fixes], "states are exactly the forwarded fixes, in order"
    assert not {j.ts for j in trace.of("jitter")} & set(ts)
    before, after = run["before"], run["after"]
    delta = lambda name: family(after, name) - family(before, name)
    assert delta("fleetmq_updates_accepted_total") == len(fixes)
    assert delta("fleetmq_updates_filtered_total") == \
        len(trace.of("duplicate")) + len(trace.of("jitter"))


def test_invalid_fixes_get_puback_0x99_naming_the_field(run):
    trace, acks = run["trace"], run["acks"]
    invalid = 0
    for item, (code, properties) in zip(trace.sent, acks):
        if item.kind == "invalid":
            invalid += 1
            assert reason_value(code) == PAYLOAD_FORMAT_INVALID, (item, code)
            text = prop(properties, "ReasonString", "")
            assert text and item.field in text, (item.payload, text)
        else:
            assert reason_value(code) == 0, (item.kind, item.payload, code)
    assert invalid == 6
    before, after = run["before"], run["after"]
    for reason in ("lat_out_of_range", "missing_field", "bad_json"):
        n = sum(1 for s in trace.of("invalid") if s.reason == reason)
        assert rejected(after, reason) - rejected(before, reason) == n, reason
