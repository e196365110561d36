"""Vehicle ownership across nodes (README "Cluster: vehicle ownership", issue 13 item 4):
three `fleetmq serve --cluster` nodes on one redis-server behind HAProxy (lease_util.py).

- 200 v5 drivers (paho, QoS 1) through HAProxy; `kill -9` of the node holding about a third of
  them, right after the PUBACKs of their last fixes: every one reconnects (paho) and resumes
  within 5 s on a surviving node, which continues its filters from Redis (an acknowledged fix is
  in Redis): the last fix again is dropped as a duplicate, no `online`, `offline` or
  `deviation` event follows (a fifth of the drivers are off their route, deviated before the
  kill), and the next state equals what one uninterrupted node computes for the same fixes.
- SIGTERM of a node: its leases are gone from Redis by the time its v5 drivers get DISCONNECT
  0x8B; they come back on another node and continue the same way.
- A vehicle held by a live node is handed over on request (HTTP ingest on another node) and
  back (its MQTT driver on the first node), its filters continuing each time.
- `GET /api/v1/vehicles/{id}/stops` on the nodes that do not process a vehicle answers as its
  processing node does.

The fencing of an old owner's writes is `cluster::lease::tests` (Rust, a real redis-server).
"""

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from e2e_util import get_json, load_shapes, metrics
from harness import wait_for
from lease_util import Cluster
from redis_cluster_util import store  # noqa: F401 (fixture: one redis-server, or a Redis Cluster)
from mqttc import Client, connected, reason_value, unique

DRIVERS = 200
FIXES = 4  # before the node goes away; the third off-route fix raises `deviation`
STEP_M = 15.0  # along the route per fix, one second apart
OFF_ROUTE_M = 150.0  # deviators' distance from their route
SPURIOUS = ("online", "offline", "deviation", "back_on_route")
# Fields of a processed state that the pipeline computes from the fixes alone.
COMPUTED = ("lat", "lon", "raw_lat", "raw_lon", "ts", "speed", "heading", "route", "status",
            "on_route", "off_route_m", "progress_m")


@pytest.fixture
def cluster(fleetmq_path, tmp_path, store):
    c = Cluster(fleetmq_path, tmp_path, store)
    yield c
    c.stop()


class Fleet:
    """Drivers along the first route of `/api/v1/routes`; every fifth one 150 m off it."""

    def __init__(self, routes: dict, count: int, prefix: str):
        self.frame, shapes = load_shapes(routes)
        self.shape = max(shapes, key=lambda s: s.line.length)
        self.ids = [unique(prefix) for _ in range(count)]
        self.base_ts = int(time.time() * 1000) - 120_000
        usable = self.shape.line.length - STEP_M * (FIXES + 4)
        self.start = {v: (37.0 * i) % usable for i, v in enumerate(self.ids)}

    def deviator(self, vehicle: str) -> bool:
        return self.ids.index(vehicle) % 5 == 0

    def fix(self, vehicle: str, k: int) -> dict:
        s = self.start[vehicle] + STEP_M * k
        x, y = self.shape.line.at(s)
        if self.deviator(vehicle):
            nx, ny = self.shape.line.normal(s)
            x, y = x + OFF_ROUTE_M * nx, y + OFF_ROUTE_M * ny
        lat, lon = self.frame.to_geo(x, y)
        return {"lat": round(lat, 7), "lon": round(lon, 7), "ts": self.base_ts + 1000 * k,
                "accuracy": 5, "route": self.shape.route_id}

    def payload(self, vehicle: str, k: int) -> str:
        return json.dumps(self.fix(vehicle, k))


def topic(vehicle: str) -> str:
    return f"fleet/{vehicle}/location"


def ack_code(client: Client, info, what: str) -> int:
    code, _ = wait_for(lambda: client._pubacks.get(info.mid), 10, what)
    return reason_value(code)


def send_all(drivers: dict, fleet: Fleet, ks) -> None:
    """Publishes fixes `ks` of every driver at once (QoS 1), then waits for every PUBACK."""
    pending = [(v, k, c.publish_nowait(topic(v), fleet.payload(v, k), 1))
               for v, c in drivers.items() for k in ks]
    for v, k, info in pending:
        assert ack_code(drivers[v], info, f"PUBACK of fix {k} of {v}") < 0x80


def parallel(fn, items, workers: int = 16):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


# Every client a test opens, closed after it (`Client.close`: paho's select() loop cannot use
# file descriptors above 1023, so 200 leaked drivers would break the next test's clients).
_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _OPEN:
        _OPEN.pop().close()


def watch(node) -> Client:
    w = connected(node.addr)
    _OPEN.append(w)
    w.subscribe([("vehicles/#", 0), ("events/#", 1)])
    return w


def received_since(watchers: dict, marks: dict, vehicles: set):
    """(states, events) the watchers got after `marks` for `vehicles`: lists of dicts."""
    states, events = [], []
    for name, w in watchers.items():
        for m in list(w.messages)[marks[name]:]:
            body = json.loads(m.payload)
            if body.get("vehicle") not in vehicles:
                continue
            (states if m.topic.startswith("vehicles/") else events).append(body)
    return states, events


def reconnecting(addr, vehicle: str) -> Client:
    """A driver whose paho reconnects by itself 50 to 200 ms after losing its connection
    (through HAProxy, to whichever node is up)."""
    driver = connected(addr, vehicle)
    _OPEN.append(driver)
    driver.paho.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
    return driver


def expect_reconnect(drivers) -> None:
    """Forgets the drivers' CONNACK, so `resume` waits for the one of the reconnection."""
    for d in drivers:
        with d._lock:
            d.connack = None


def resume(driver: Client, fleet: Fleet, vehicle: str) -> float:
    """Waits for paho's reconnection, sends the last fix again (a duplicate) and the next one;
    returns when the next one's PUBACK arrived (time.monotonic())."""
    wait_for(lambda: driver.connack, 10, f"{vehicle} reconnected")
    last = driver.publish(topic(vehicle), fleet.payload(vehicle, FIXES - 1), 1, timeout=10)
    assert reason_value(last[0]) < 0x80, last
    nxt = driver.publish(topic(vehicle), fleet.payload(vehicle, FIXES), 1, timeout=10)
    assert reason_value(nxt[0]) < 0x80, nxt
    return time.monotonic()


def reference_states(fleetmq_factory, fleet: Fleet, vehicles) -> dict:
    """The last state one uninterrupted node (no cluster, no Redis) computes from the same
    fixes, and every event it raised on the last fix."""
    ref = fleetmq_factory()
    w = watch(ref)
    d = connected(ref.addr)
    for v in vehicles:
        for k in range(FIXES + 1):
            code, _ = d.publish(topic(v), fleet.payload(v, k), 1)
            assert reason_value(code) < 0x80
    def last_states():
        out = {}
        for m in list(w.messages):
            if m.topic.startswith("vehicles/"):
                s = json.loads(m.payload)
                out[s["vehicle"]] = s
        return out if all(out.get(v, {}).get("ts") == fleet.fix(v, FIXES)["ts"]
                          for v in vehicles) else None
    return wait_for(last_states, 10, "reference states")


def events_everywhere(watchers: dict, fleet: Fleet, when: str) -> None:
    """Waits until every watcher got every vehicle's `online` and every deviator's `deviation`.

    A node's watchers get its own events at once, the other nodes' over the cluster bus, later
    (on a loaded machine, up to seconds): an event of the old node that reaches a surviving
    node's watcher only after the marks would look like a spurious one of the new node."""
    want = {(v, "online") for v in fleet.ids} | {(v, "deviation") for v in fleet.ids
                                                 if fleet.deviator(v)}

    def missing():
        out = {}
        for name, w in watchers.items():
            seen = set()
            for m in list(w.messages):
                if m.topic.startswith("events/"):
                    seen.add((json.loads(m.payload)["vehicle"], m.topic.rsplit("/", 1)[1]))
            if want - seen:
                out[name] = sorted(want - seen)[:3]
        return out

    wait_for(lambda: not missing(), 20, f"every watcher has every event {when}")


def check_continued(states, events, fleet: Fleet, moved, since_ms: float, reference=None):
    """Each moved vehicle's only new state is that of the next fix (the repeated last fix was a
    duplicate), equal to the reference's where given, and no spurious event came.

    A state of the last fix received by a node before `since_ms` (the kill or SIGTERM, same
    host clock) is the old node's own, not a repeat: it reaches the other nodes' watchers over
    the cluster bus, asynchronously, and may arrive after the PUBACK (which waits for Redis,
    not for the bus) and so after the watchers' marks."""
    new_ts = {v: fleet.fix(v, FIXES)["ts"] for v in moved}
    last = {v: fleet.fix(v, FIXES - 1)["ts"] for v in moved}
    repeated = [s["vehicle"] for s in states
                if s["ts"] == last[s["vehicle"]] and s["received_at"] >= since_ms]
    assert not repeated, f"repeated last fixes forwarded instead of dropped: {repeated[:5]}"
    got = {s["vehicle"]: s for s in states if s["ts"] == new_ts[s["vehicle"]]}
    assert set(got) == set(moved), f"missing next states: {sorted(set(moved) - set(got))[:5]}"
    spurious = [(e["vehicle"], e["kind"], e["ts"] - fleet.base_ts) for e in events
                if e["kind"] in SPURIOUS]
    assert not spurious, f"spurious events after the handoff: {spurious[:10]}"
    for v, want in (reference or {}).items():
        for f in COMPUTED:
            assert got[v].get(f) == want.get(f), (v, f, got[v].get(f), want.get(f))


def test_kill_9_drivers_resume_on_other_nodes_with_their_filters(cluster, fleetmq_factory):
    kill_9_scenario(cluster, fleetmq_factory, "k9")


def kill_9_scenario(cluster, fleetmq_factory, prefix: str):
    routes = get_json(cluster.nodes["n1"], "/api/v1/routes")
    fleet = Fleet(routes, DRIVERS, prefix)
    watchers = {n: watch(b) for n, b in cluster.nodes.items()}
    drivers = dict(zip(fleet.ids, parallel(lambda v: reconnecting(cluster.addr, v), fleet.ids)))
    send_all(drivers, fleet, range(FIXES - 1))
    owners = cluster.owners(fleet.ids)
    assert all(owners.values()), [v for v, o in owners.items() if not o][:5]
    victim = max(cluster.nodes, key=lambda n: list(owners.values()).count(n))
    moved = [v for v in fleet.ids if owners[v] == victim]
    assert DRIVERS // 4 <= len(moved) <= DRIVERS // 2, {n: list(owners.values()).count(n)
                                                        for n in cluster.nodes}
    events_everywhere(watchers, fleet, "before the kill")
    survivors = {n: w for n, w in watchers.items() if n != victim}
    # The last fix, and the kill right after its PUBACKs: acknowledged means in Redis with its
    # filter state (a PUBACK sent before the write would lose it to the kill).
    send_all(drivers, fleet, [FIXES - 1])
    marks = {n: len(w.messages) for n, w in survivors.items()}
    expect_reconnect(drivers[v] for v in moved)
    killed_ms = time.time() * 1000
    cluster.nodes[victim].proc.kill()  # kill -9: no release, no flush
    killed_at = time.monotonic()
    cluster.nodes[victim].proc.wait()
    resumed = parallel(lambda v: resume(drivers[v], fleet, v), moved, len(moved))
    took = max(resumed) - killed_at
    print(f"{len(moved)} drivers of {victim} resumed {took:.2f} s after kill -9")
    assert took < 5.0, f"resumed {took:.2f} s after the kill"

    new_owners = cluster.owners(moved)
    assert set(new_owners.values()) <= set(survivors), new_owners
    check = lambda: received_since(survivors, marks, set(moved))  # noqa: E731
    wait_for(lambda: len({s["vehicle"] for s in check()[0]}) == len(moved), 10, "next states")
    sample = [v for v in moved if fleet.deviator(v)][:3] + [v for v in moved
                                                           if not fleet.deviator(v)][:3]
    reference = reference_states(fleetmq_factory, fleet, sample)
    states, events = check()
    check_continued(states, events, fleet, moved, killed_ms, {v: reference[v] for v in sample})
    taken = sum(metrics(cluster.nodes[n]).get("fleetmq_cluster_lease_taken_over_total", 0)
                for n in survivors)
    assert taken == len(moved), taken


def test_sigterm_releases_leases_before_0x8b_and_drivers_come_back(cluster):
    routes = get_json(cluster.nodes["n1"], "/api/v1/routes")
    fleet = Fleet(routes, 30, "st")
    watchers = {n: watch(b) for n, b in cluster.nodes.items()}
    drivers = dict(zip(fleet.ids, parallel(lambda v: reconnecting(cluster.addr, v), fleet.ids)))
    send_all(drivers, fleet, range(FIXES))
    events_everywhere(watchers, fleet, "before the SIGTERM")
    owners = cluster.owners(fleet.ids)
    victim = max(cluster.nodes, key=lambda n: list(owners.values()).count(n))
    moved = [v for v in fleet.ids if owners[v] == victim]
    assert moved
    survivors = {n: w for n, w in watchers.items() if n != victim}
    marks = {n: len(w.messages) for n, w in survivors.items()}
    expect_reconnect(drivers[v] for v in moved)

    node = cluster.nodes[victim]
    signalled_ms = time.time() * 1000
    node.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_for(lambda: all(drivers[v].disconnected for v in moved), 5, "DISCONNECT of every driver")
    codes = {reason_value(drivers[v].disconnected[1]) for v in moved}
    assert codes == {0x8B}, codes
    # Released, not run out: the lease fields are gone within a lease's lifetime.
    stored = cluster.leases(moved)
    assert time.monotonic() - signalled < 5.0
    held = {v: owner for v, (owner, _, _) in stored.items() if owner}
    assert not held, f"leases still held after 0x8B: {held}"
    assert node.proc.wait(10) == 0

    parallel(lambda v: resume(drivers[v], fleet, v), moved, len(moved))
    assert set(cluster.owners(moved).values()) <= set(survivors)
    check = lambda: received_since(survivors, marks, set(moved))  # noqa: E731
    wait_for(lambda: len({s["vehicle"] for s in check()[0]}) == len(moved), 10, "next states")
    states, events = check()
    check_continued(states, events, fleet, moved, signalled_ms)


def test_live_holder_hands_the_vehicle_over_on_request(cluster):
    routes = get_json(cluster.nodes["n1"], "/api/v1/routes")
    fleet = Fleet(routes, 1, "ho")
    v = fleet.ids[0]
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    watchers = {"n1": watch(n1), "n2": watch(n2)}
    driver = connected(n1.addr, v)
    _OPEN.append(driver)
    for k in range(FIXES - 1):
        code, _ = driver.publish(topic(v), fleet.payload(v, k), 1)
        assert reason_value(code) < 0x80
    assert cluster.owners([v]) == {v: "n1"}
    marks = {n: len(w.messages) for n, w in watchers.items()}

    # The same vehicle over HTTP on n2 while its driver stays connected to n1: n2 asks n1,
    # n1 flushes and releases, n2 continues the filters (the repeated fix is a duplicate).
    url = f"http://{n2.http_host}:{n2.http_port}/api/v1/vehicles/{v}/location"
    started = time.monotonic()
    for k in (FIXES - 2, FIXES - 1):
        r = requests.post(url, data=fleet.payload(v, k), timeout=10)
        assert r.status_code == 202, r.text
    assert time.monotonic() - started < 2.0
    assert cluster.owners([v]) == {v: "n2"}
    assert metrics(n1).get("fleetmq_cluster_lease_released_total") == 1
    assert metrics(n2).get("fleetmq_cluster_lease_handoffs_total") == 1
    # And back: the driver's next fix on n1 takes the vehicle back from n2.
    code, _ = driver.publish(topic(v), fleet.payload(v, FIXES), 1)
    assert reason_value(code) < 0x80
    assert cluster.owners([v]) == {v: "n1"}
    # Processed outputs cross nodes: the watcher of each node sees each new state once.
    for name, w in watchers.items():
        check = lambda: received_since({name: w}, marks, {v})  # noqa: E731
        wait_for(lambda: any(s["ts"] == fleet.fix(v, FIXES)["ts"] for s in check()[0]), 5,
                 f"the last state on {name}")
        states, events = check()
        assert sorted(s["ts"] for s in states) == [
            fleet.fix(v, k)["ts"] for k in (FIXES - 1, FIXES)], name
        assert not [e["kind"] for e in events if e["kind"] in SPURIOUS], name


def test_next_stops_on_every_node_are_the_processing_nodes(cluster):
    """`GET /api/v1/vehicles/{id}/stops` on a node that does not process the vehicle lists what
    the node that does lists (its tracker as written to Redis), not the state's next stop
    alone."""
    routes = get_json(cluster.nodes["n1"], "/api/v1/routes")
    fleet = Fleet(routes, 2, "stops")
    v = next(x for x in fleet.ids if not fleet.deviator(x))
    n1 = cluster.nodes["n1"]
    driver = connected(n1.addr, v)
    _OPEN.append(driver)
    for k in range(FIXES):
        code, _ = driver.publish(topic(v), fleet.payload(v, k), 1)
        assert reason_value(code) < 0x80
    assert cluster.owners([v]) == {v: "n1"}
    path = f"/api/v1/vehicles/{v}/stops?limit=8"
    own = get_json(n1, path)
    assert own["ts"] == fleet.fix(v, FIXES - 1)["ts"], own
    assert len(own["stops"]) > 1, own  # more than the state's `next_stop`
    for name in ("n2", "n3"):
        node = cluster.nodes[name]
        wait_for(lambda: get_json(node, path) == own, 10, f"the stops of {v} on {name}")
    # A vehicle nobody knows is still a 404 on a node that does not process it.
    r = requests.get(f"http://{cluster.nodes['n2'].http_host}:{cluster.nodes['n2'].http_port}"
                     f"/api/v1/vehicles/{unique('nobody')}/stops", timeout=5)
    assert r.status_code == 404, r.text


def test_a_dead_nodes_vehicle_goes_offline_when_its_driver_never_returns(
        fleetmq_path, tmp_path, store):
    """n3 dies with a vehicle whose driver does not come back: nobody holds its tracker, so
    n1 (the smallest live id) adopts it after `stale_after` + 10 s of silence and it goes
    offline on every node, once. A silent vehicle of a live node (n2) stays with n2, which
    marks it offline itself: n1 adopts only the orphan."""
    c = Cluster(fleetmq_path, tmp_path, store, extra=("--stale-after", "3s"))
    try:
        n1, n2, n3 = (c.nodes[n] for n in ("n1", "n2", "n3"))
        routes = get_json(n1, "/api/v1/routes")
        fleet = Fleet(routes, 2, "orphan")
        orphan, kept = fleet.ids
        watcher = watch(n2)

        def drive(vehicle, node):
            driver = connected(node.addr, vehicle)
            _OPEN.append(driver)
            for k in range(2):
                code, _ = driver.publish(topic(vehicle), fleet.payload(vehicle, k), 1)
                assert reason_value(code) < 0x80

        def offline(vehicle):
            return [m for m in list(watcher.messages)
                    if m.topic == f"events/{vehicle}/offline"]

        # The live holder marks its own silent vehicle offline after `stale_after`.
        drive(kept, n2)
        wait_for(lambda: offline(kept), 15, f"offline of {kept} from n2")
        # The orphan's node dies well within `stale_after` of its last fix, so n3 cannot
        # mark it offline itself first (it did when both went silent together).
        drive(orphan, n3)
        n3.proc.kill()  # kill -9: the driver's connection and the lease's renewals end
        assert not offline(orphan), "n3 marked the orphan offline before it died"
        assert c.owners([orphan, kept]) == {orphan: "n3", kept: "n2"}
        n3.proc.wait()
        killed = time.monotonic()
        # Left: 3 s stale + 10 s grace after its last state, then the next 5 s round, then
        # the tracker's sweep (1 s); allow as much again for a loaded machine.
        wait_for(lambda: offline(orphan), 45, f"offline of {orphan} after its node died")
        assert time.monotonic() - killed >= 5, "adopted before its lease could lapse"
        wait_for(lambda: get_json(n2, f"/api/v1/vehicles/{orphan}")["status"] == "offline", 10,
                 f"{orphan} offline in n2's REST view")
        assert len(offline(orphan)) == 1 and len(offline(kept)) == 1
        assert metrics(n1).get("fleetmq_cluster_lease_acquired_total") == 1, "only the orphan"
        assert "adopted a vehicle left without a node" in n1.log()
    finally:
        c.stop()
