"""The cluster with real processes (README "Running a cluster", docs/http-api.md#get-apiv1cluster):
three `fleetmq serve --cluster` nodes on one redis-server, HAProxy running `deploy/haproxy.cfg`.

- a driver on node A, paho watchers on A and B, a `/ws` watcher on C, SSE and REST on B: every
  processed state (and event) arrives exactly once at each;
- `GET /api/v1/vehicles`, `near` and `bbox` on every node see the vehicles of every node;
- `GET /api/v1/cluster` lists the nodes and drops a `kill -9`ed one within about 5 s; a node
  silent for 5 s (SIGSTOP) comes back as a new incarnation;
- MQTT and `/ws` through HAProxy;
- Redis stopped for 5 s while drivers publish: local clients keep being served, `/readyz` says
  `degraded`, then cross-node delivery resumes.
"""

import json
import signal
import subprocess
import time

import pytest

from bridge_util import Driver, Sse, Ws
from cluster_util import Cluster, get, readiness
from harness import Timeout, wait_for
from mqttc import connected, unique

LAT, LON = -16.92, 145.77


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request, fleetmq_path, tmp_path_factory):
    """Three nodes and HAProxy on one redis-server, then on a 3-master Redis Cluster."""
    c = Cluster(fleetmq_path, tmp_path_factory.mktemp("cluster"),
                redis_cluster=request.param == "redis-cluster")
    try:
        for name in ("a", "b", "c"):
            c.start_node(name)
        c.wait_nodes(["a", "b", "c"])
        c.start_haproxy()
    except BaseException:
        print(c.logs())
        c.stop()
        raise
    yield c
    c.stop()


def states_of(client, vehicle):
    """`ts` of every `vehicles/{vehicle}` message the paho client received, in order."""
    return [json.loads(m.payload)["ts"] for m in list(client.messages)
            if m.topic == f"vehicles/{vehicle}"]


def events_of(client, vehicle, kind):
    return [m for m in list(client.messages) if m.topic == f"events/{vehicle}/{kind}"]


def watcher(node, vehicle):
    client = connected(node.addr, unique("watch"))
    client.subscribe(f"vehicles/{vehicle}")
    client.subscribe(f"events/{vehicle}/#", qos=1)
    return client


def test_every_processed_state_arrives_once_at_every_node(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    v = unique("once")
    on_a, on_b = watcher(a, v), watcher(b, v)
    ws = Ws(c)
    sse = Sse(b, f"vehicle={v}&max_hz=10")
    driver = Driver(a)

    def sse_states():
        return [d["vehicle"]["ts"] for name, d in sse.all() if name == "update"]

    try:
        assert ws.subscribe("s", vehicle=v, events=True, max_hz=10)["vehicles"] == []
        wait_for(lambda: sse.find(lambda e: e[0] == "snapshot"), 10, "the SSE snapshot")
        sent = []
        for i in range(6):
            ts = driver.fix(v, LAT + 0.002 * i, LON)
            sent.append(ts)
            # The next fix only once every watcher has this one: nothing is coalesced away.
            wait_for(lambda: ts in states_of(on_b, v), 10, f"state {ts} over MQTT on B")
            ws.wait_update(v, ts)
            wait_for(lambda: ts in states_of(on_a, v), 10, f"state {ts} over MQTT on A")
            wait_for(lambda: ts in sse_states(), 10, f"state {ts} over SSE on B")
        status, state = get(b.http_host, b.http_port, f"/api/v1/vehicles/{v}")
        assert status == 200 and state["ts"] == sent[-1], (status, state)
        # Anything duplicated would have arrived by the time this marker did.
        marker = driver.fix(v, LAT + 0.02, LON)
        sent.append(marker)
        wait_for(lambda: marker in states_of(on_b, v), 10, "the marker state on B")
        ws.wait_update(v, marker)
        wait_for(lambda: marker in states_of(on_a, v), 10, "the marker state on A")
        wait_for(lambda: marker in sse_states(), 10, "the marker state over SSE")
        assert states_of(on_a, v) == sent, "node A (the driver's own)"
        assert states_of(on_b, v) == sent, "node B over MQTT"
        assert [u["vehicle"]["ts"] for u in ws.updates_of(v)] == sent, "node C over /ws"
        assert sse_states() == sent, "node B over SSE"
        assert len(events_of(on_a, v, "online")) == 1
        assert len(events_of(on_b, v, "online")) == 1
        assert len(ws.all(lambda m: m.get("type") == "event"
                          and m["event"]["kind"] == "online")) == 1
    finally:
        driver.close()
        ws.close()
        sse.close()
        on_a.disconnect()
        on_b.disconnect()


def test_rest_on_every_node_sees_the_whole_fleet(cluster):
    prefix = unique("fleet")
    drivers, where = [], {}
    try:
        for i, name in enumerate("abc"):
            d = Driver(cluster.nodes[name])
            drivers.append(d)
            v = f"{prefix}-{name}"
            where[v] = (LAT + 0.01 * i, LON + 0.01 * i)
            d.fix(v, *where[v])
        mine = sorted(where)
        box = f"{LON - 0.005},{LAT - 0.005},{LON + 0.025},{LAT + 0.025}"
        for name in "abc":
            node = cluster.nodes[name]

            def ids(query):
                status, body = get(node.http_host, node.http_port, f"/api/v1/vehicles?{query}")
                assert status == 200, (name, query, status)
                return [s["vehicle"] for s in body["vehicles"] if s["vehicle"].startswith(prefix)]

            wait_for(lambda: sorted(ids("limit=10000")) == mine, 10, f"every vehicle on {name}")
            assert ids(f"near={LAT},{LON}&radius_m=5000") == mine, name  # nearest first
            assert sorted(ids(f"bbox={box}")) == mine, name
            assert ids(f"bbox={LON + 0.015},{LAT + 0.015},{LON + 0.025},{LAT + 0.025}") \
                == [f"{prefix}-c"], name
    finally:
        for d in drivers:
            d.close()


def held_total(node) -> int:
    """`fleetmq_cluster_states_received_total{path="held"}` of a node."""
    import urllib.request
    with urllib.request.urlopen(f"http://{node.http_host}:{node.http_port}/metrics",
                                timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith('fleetmq_cluster_states_received_total{path="held"}'):
                return int(float(line.split()[-1]))
    raise AssertionError("no held counter in /metrics")


def test_a_node_without_watchers_holds_states_and_reads_see_the_latest(cluster):
    """cluster/deferred.rs: node C, where no client watches the vehicle, keeps its states
    unparsed (the counter shows they waited), and REST and `near` on C still give the latest
    one."""
    a, c = cluster.nodes["a"], cluster.nodes["c"]
    v = unique("held")
    driver = Driver(a)
    try:
        first = driver.fix(v, LAT, LON)
        wait_for(lambda: (get(c.http_host, c.http_port, f"/api/v1/vehicles/{v}")[1] or {})
                 .get("ts") == first, 10, "the first state on C (never held)")
        before = held_total(c)
        sent = [driver.fix(v, LAT + 0.002 * i, LON) for i in range(1, 5)]
        wait_for(lambda: held_total(c) - before >= len(sent), 10,
                 "C holding the next states")
        status, state = get(c.http_host, c.http_port, f"/api/v1/vehicles/{v}")
        assert status == 200 and state["ts"] == sent[-1], (status, state)
        assert abs(state["raw_lat"] - (LAT + 0.008)) < 1e-9, state
        last = driver.fix(v, LAT + 0.01, LON)
        wait_for(lambda: held_total(c) - before >= len(sent) + 1, 10, "C holding one more")
        status, body = get(c.http_host, c.http_port,
                           f"/api/v1/vehicles?near={LAT + 0.01},{LON}&radius_m=500")
        assert status == 200, status
        near = [s for s in body["vehicles"] if s["vehicle"] == v]
        assert [s["ts"] for s in near] == [last], body
    finally:
        driver.close()


def test_cluster_listing_drops_a_killed_node(cluster):
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    d = cluster.start_node("d")
    try:
        cluster.wait_nodes(["a", "b", "c", "d"], on=["a", "b", "d"])
        status, body = get(a.http_host, a.http_port, "/api/v1/cluster")
        assert status == 200 and body["nodes"][0]["id"] == "a", body  # the answering node first
        listed = {n["id"]: n for n in body["nodes"]}
        assert listed["d"]["mqtt"] == f"{d.host}:{d.port}"
        assert listed["d"]["http"] == f"{d.http_host}:{d.http_port}"
        assert set(listed["d"]) == {"id", "mqtt", "http", "started_at", "last_seen",
                                    "connections", "vehicles"}
        assert listed["d"]["started_at"] <= listed["d"]["last_seen"]
        d.proc.kill()  # kill -9: no goodbye, the heartbeats just stop
        d.proc.wait()
        killed = time.monotonic()
        # Dead after 5 s of silence; seen at the next heartbeat (1 s) of the watching node.
        cluster.wait_nodes(["a", "b", "c"], timeout=8, on=["a", "b"])
        assert time.monotonic() - killed < 7.5
    finally:
        cluster.nodes.pop("d", None)
        d.stop()


def test_a_node_back_from_the_dead_is_a_new_incarnation(cluster):
    a = cluster.nodes["a"]
    e = cluster.start_node("e")

    def incarnation():
        return cluster.hget("fleetmq:node:e", "incarnation")

    try:
        cluster.wait_nodes(["a", "b", "c", "e"], on=["a", "e"])
        assert incarnation() == "1"
        e.proc.send_signal(signal.SIGSTOP)  # silent, but not gone: a long GC pause, a frozen VM
        try:
            cluster.wait_nodes(["a", "b", "c"], timeout=10, on=["a"])
        finally:
            e.proc.send_signal(signal.SIGCONT)
        cluster.wait_nodes(["a", "b", "c", "e"], on=["a", "e"])
        wait_for(lambda: incarnation() == "2", 5, "incarnation 2 in fleetmq:node:e")
        assert "new incarnation" in e.log()
    finally:
        cluster.nodes.pop("e", None)
        e.stop()


def test_a_node_outside_a_cluster_lists_itself(fleetmq_factory):
    node = fleetmq_factory()
    status, body = get(node.http_host, node.http_port, "/api/v1/cluster")
    assert status == 200, status
    [me] = body["nodes"]
    assert me["id"] == "local" and me["mqtt"] == f"{node.host}:{node.port}", me


@pytest.mark.parametrize("args, fix", [
    (["--cluster", "--redis", "redis://127.0.0.1:1"], "--cluster needs --node-id"),
    (["--cluster", "--node-id", "a"], "--cluster needs --redis"),
    (["--node-id", "a b"], "invalid node id"),
])
def test_cluster_settings_are_checked(fleetmq_path, tmp_path, args, fix):
    done = subprocess.run([str(fleetmq_path), "serve", "--mqtt", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", *args], cwd=tmp_path, capture_output=True, timeout=30)
    assert done.returncode == 2, done
    assert fix in done.stderr.decode(), done.stderr


def test_mqtt_and_websocket_through_haproxy(cluster):
    front = cluster.haproxy.front
    v = unique("lb")
    ws = Ws(front)
    listener = connected(front.addr, unique("lbwatch"))
    driver = Driver(front)
    try:
        listener.subscribe(f"vehicles/{v}")
        ws.subscribe("s", vehicle=v, max_hz=10)
        ts = driver.fix(v, LAT, LON)
        ws.wait_update(v, ts)
        wait_for(lambda: ts in states_of(listener, v), 10, "the state through HAProxy")
        status, state = get(front.http_host, front.http_port, f"/api/v1/vehicles/{v}")
        assert status == 200 and state["ts"] == ts
    finally:
        driver.close()
        ws.close()
        listener.disconnect()


def test_redis_outage_keeps_local_clients_then_cross_node_resumes(cluster):
    """Last in the module: it restarts Redis (the other tests do not need it to have run)."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    prefix = unique("outage")
    vehicles = [f"{prefix}-{i}" for i in range(5)]
    local, remote = connected(a.addr, unique("loc")), connected(b.addr, unique("rem"))
    local.subscribe(f"vehicles/{vehicles[0]}")
    remote.subscribe(f"vehicles/{vehicles[0]}")
    driver = Driver(a)
    step = [0]

    def round_of_fixes():
        """One fix of every vehicle; returns the `ts` of the first one's."""
        step[0] += 1
        first = None
        for i, v in enumerate(vehicles):
            ts = driver.fix(v, LAT + 0.001 * step[0], LON + 0.01 * i)
            first = first or ts
        return first

    def got(client, ts):
        return ts in states_of(client, vehicles[0])

    try:
        ts = round_of_fixes()
        wait_for(lambda: got(remote, ts), 10, "cross-node delivery before the outage")
        cluster.redis.stop()
        for node in (a, b):
            wait_for(lambda: readiness(node) == "degraded", 10, "/readyz degraded")
        # Load for 5 s with Redis away: node A's own clients get every state at once.
        outage_end = time.monotonic() + 5
        while time.monotonic() < outage_end:
            ts = round_of_fixes()
            wait_for(lambda: got(local, ts), 5, "local delivery during the outage")
        assert readiness(b) == "degraded"
        cluster.restart_redis()
        for node in (a, b):
            wait_for(lambda: readiness(node) == "ready", 15, "/readyz ready again")
        ts = round_of_fixes()
        try:
            wait_for(lambda: got(remote, ts), 10, "cross-node delivery after the outage")
        except Timeout as e:
            raise AssertionError(f"{e}\n{cluster.logs()}") from e
        cluster.wait_nodes(["a", "b", "c"])
    finally:
        driver.close()
        local.disconnect()
        remote.disconnect()
