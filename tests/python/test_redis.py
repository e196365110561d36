"""Redis persistence (docs/redis.md, issue 5) against a real redis-server on a free loopback port.

- processed state, geo index and track stream match what subscribers received;
- `kill -9` and restart: REST, retained `vehicles/{id}` and the filters come back (a repeated fix is
  still a duplicate, a far jump still a teleport, the next fix continues the track);
- Redis stopped during a load: the broker keeps serving, buffers one entry per vehicle, and every
  vehicle's latest state is in Redis within 1 s of Redis coming back;
- SOS: in `fleetmq:sos` before subscribers get `events/{id}/sos`; with Redis down it is in the
  local SOS log before it is delivered, and written to Redis once Redis is back (more in
  `test_sos_log.py`).
"""

import json
import pathlib
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from harness import RedisProcess, free_port, wait_for
from mqttc import connected, reason_value, unique
from redis_cluster_util import RedisCluster, cli_args, redis_flags, store  # noqa: F401

BASE_LAT, BASE_LON = -16.92, 145.77
STEP_DEG = 0.0003  # ~33 m per fix, one second apart: 33 m/s, under the 70 m/s limit


def now_ms() -> int:
    return int(time.time() * 1000)


def redis_on(port: int, workdir: pathlib.Path) -> RedisProcess:
    """A redis-server on a given port (to bring "the same" Redis back after stopping it)."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisProcess(proc, port)
    wait_for(lambda: proc.poll() is not None or server.ping(), 10, "redis PONG")
    assert proc.poll() is None, "redis-server exited at start"
    return server


def bring_back(redis, workdir: pathlib.Path):
    """Starts the stopped `redis` (a redis-server or a cluster) again on its port(s), empty;
    returns the handle to query and stop."""
    if isinstance(redis, RedisCluster):
        redis.restart()
        return redis
    return redis_on(redis.port, workdir)


# The first four bytes of a vehicle's `tracker` field in hex, and where (1-based) the vehicle
# id ARGV[1] first appears in it; redis-cli prints replies line by line, and the snapshot is
# binary.
TRACKER_HEAD = ("local t = redis.call('HGET', KEYS[1], 'tracker') "
                "return string.format('%02x%02x%02x%02x', string.byte(t, 1, 4)) .. ' ' .. "
                "tostring(string.find(t, ARGV[1], 1, true))")


def rcli(redis, *commands) -> list:
    """Runs commands (tuples of words) through one redis-cli (following a cluster's
    redirections); one output line per reply line."""
    script = "".join(" ".join(_quote(w) for w in c) + "\n" for c in commands)
    out = subprocess.run(["redis-cli", *cli_args(redis), "--raw"], input=script.encode(),
                         capture_output=True, timeout=10)
    return [line for line in out.stdout.decode().splitlines()
            if not line.startswith("-> Redirected to slot")]


def _quote(word) -> str:
    return '"' + str(word).replace("\\", "\\\\").replace('"', '\\"') + '"'


def http_get(broker, path: str):
    url = f"http://{broker.http_host}:{broker.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(broker, name: str) -> float:
    _, text = http_get(broker, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


class Fleet:
    """Vehicles moving south in Cairns, one fix a second of device time."""

    def __init__(self, count: int, prefix: str):
        self.ids = [unique(prefix) for _ in range(count)]
        self.base_ts = now_ms() - 300_000
        self.sent = {v: 0 for v in self.ids}

    def fix(self, vehicle: str, k: int) -> dict:
        i = self.ids.index(vehicle)
        return {"lat": round(BASE_LAT - 0.002 * i - STEP_DEG * k, 7), "lon": BASE_LON,
                "ts": self.base_ts + 1000 * k, "accuracy": 5}

    def publish_next(self, client, vehicle: str):
        k = self.sent[vehicle]
        code, _ = client.publish(f"fleet/{vehicle}/location", json.dumps(self.fix(vehicle, k)), 1)
        assert reason_value(code) < 0x80, f"fix {k} of {vehicle} refused: {code}"
        self.sent[vehicle] = k + 1


def latest_states(watcher) -> dict:
    """vehicle → (last received vehicles/{id} state, number of fixes forwarded)."""
    out = {}
    for m in list(watcher.messages):
        if not m.topic.startswith("vehicles/"):
            continue
        state = json.loads(m.payload)
        _, n = out.get(state["vehicle"], (None, 0))
        out[state["vehicle"]] = (state, n + (state["status"] != "offline"))
    return out


def redis_states(redis, ids) -> dict:
    lines = rcli(redis, *[("HGET", f"fleetmq:vehicle:{v}", "state") for v in ids])
    return {v: (json.loads(line) if line else None) for v, line in zip(ids, lines)}


def all_latest_in_redis(redis, watcher, ids) -> bool:
    latest = latest_states(watcher)
    stored = redis_states(redis, ids)
    return all(v in latest and stored[v] == latest[v][0] for v in ids)


def test_keys_match_processed_state(fleetmq_factory, store):
    """On one redis-server and on a 3-master Redis Cluster (pipelines cut per hash slot)."""
    redis = store
    broker = fleetmq_factory(*redis_flags(redis))
    watcher = connected(broker.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(broker.addr)
    fleet = Fleet(40, "k")
    for _ in range(3):
        for v in fleet.ids:
            fleet.publish_next(driver, v)
    wait_for(lambda: all(n == 3 for _, n in latest_states(watcher).values())
             and len(latest_states(watcher)) == 40, 10, "3 states per vehicle")
    wait_for(lambda: all_latest_in_redis(redis, watcher, fleet.ids), 5, "latest states in Redis")
    latest = latest_states(watcher)
    for v in fleet.ids:
        state, forwarded = latest[v]
        key = f"fleetmq:vehicle:{v}"
        xlen, pttl, tracker = rcli(redis, ("XLEN", f"fleetmq:track:{v}"), ("PTTL", key),
                                   ("EVAL", TRACKER_HEAD, 1, key, v))
        assert int(xlen) == forwarded == 3
        assert 0 < int(pttl) <= 3_600_000
        # The binary snapshot (docs/redis.md): magic NUL "FT2", then the vehicle id after its
        # one-byte length.
        assert tracker == "00465432 6", tracker
        lon, lat = (float(x) for x in rcli(redis, ("GEOPOS", "fleetmq:geo", v)))
        assert abs(lat - state["lat"]) < 1e-5 and abs(lon - state["lon"]) < 1e-5
    # The track stream is what /track serves, oldest first, in device time.
    v = fleet.ids[0]
    status, body = http_get(broker, f"/api/v1/vehicles/{v}/track")
    assert status == 200, body
    assert [f["ts"] for f in json.loads(body)["fixes"]] == [fleet.fix(v, k)["ts"] for k in range(3)]
    assert metric(broker, "fleetmq_redis_up") == 1


def test_kill_and_restart_restores_state_and_filters(fleetmq_factory, store):
    """On one redis-server and on a 3-master Redis Cluster (the restore SCANs every master)."""
    redis = store
    first = fleetmq_factory(*redis_flags(redis))
    watcher = connected(first.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(first.addr)
    fleet = Fleet(5, "r")
    for _ in range(4):
        for v in fleet.ids:
            fleet.publish_next(driver, v)
    wait_for(lambda: all(n == 4 for _, n in latest_states(watcher).values())
             and len(latest_states(watcher)) == 5, 10, "4 states per vehicle")
    wait_for(lambda: all_latest_in_redis(redis, watcher, fleet.ids), 5, "latest states in Redis")
    before = {v: s for v, (s, _) in latest_states(watcher).items()}
    first.proc.kill()  # kill -9: no shutdown flush, no offline states
    first.proc.wait()

    second = fleetmq_factory(*redis_flags(redis))
    for v in fleet.ids:
        status, body = http_get(second, f"/api/v1/vehicles/{v}")
        assert status == 200, body
        got = json.loads(body)
        for field in ("lat", "lon", "ts", "status", "raw_lat", "raw_lon"):
            assert got[field] == before[v][field], (v, field)
    retained = connected(second.addr)
    retained.subscribe("vehicles/#", 0)
    wait_for(lambda: len(latest_states(retained)) == 5, 5, "5 retained states")
    for v, (state, _) in latest_states(retained).items():
        assert state["ts"] == before[v]["ts"] and state["lat"] == before[v]["lat"]

    driver = connected(second.addr)
    events = connected(second.addr)
    events.subscribe("events/#", 1)
    v = fleet.ids[0]
    retained.clear()
    # The last fix again: still a duplicate (dedup state restored), so nothing is forwarded.
    last = fleet.fix(v, fleet.sent[v] - 1)
    code, _ = driver.publish(f"fleet/{v}/location", json.dumps(last), 1)
    assert reason_value(code) < 0x80
    # 20 km away one second later: a teleport against the restored last fix.
    jump = dict(fleet.fix(v, fleet.sent[v]), lat=BASE_LAT + 0.18)
    code, _ = driver.publish(f"fleet/{v}/location", json.dumps(jump), 1)
    assert reason_value(code) == 0x99, code
    # The next fix continues the track.
    fleet.publish_next(driver, v)
    wait_for(lambda: latest_states(retained).get(v), 5, "state of the continuing fix")
    state, forwarded = latest_states(retained)[v]
    assert forwarded == 1, "the repeated fix must not be forwarded"
    assert state["ts"] == fleet.fix(v, fleet.sent[v] - 1)["ts"]
    assert state["status"] == "moving"
    # Events a restart could cause (a fresh tracker) would arrive with that state.
    caused = [m.topic for m in events.messages
              if m.topic.split("/")[-1] in ("deviation", "back_on_route", "online", "offline")]
    assert not caused, caused


def test_redis_outage_keeps_serving_and_catches_up(fleetmq_factory, store, tmp_path):
    """On one redis-server and on a 3-master Redis Cluster (every node stopped)."""
    redis = store
    broker = fleetmq_factory(*redis_flags(redis))
    watcher = connected(broker.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(broker.addr)
    fleet = Fleet(20, "o")
    for v in fleet.ids:
        fleet.publish_next(driver, v)
    wait_for(lambda: all_latest_in_redis(redis, watcher, fleet.ids), 5, "states in Redis")

    redis.stop()
    wait_for(lambda: json.loads(http_get(broker, "/readyz")[1]).get("status") == "degraded", 5,
             "/readyz degraded")
    assert metric(broker, "fleetmq_redis_up") == 0
    for _ in range(5):
        for v in fleet.ids:
            fleet.publish_next(driver, v)  # acknowledged: the broker keeps serving
    wait_for(lambda: all(n == 6 for _, n in latest_states(watcher).values()), 10,
             "subscribers got every state during the outage")
    # Latest wins: one buffered entry per vehicle, not one per fix.
    assert metric(broker, "fleetmq_redis_pending") == 20

    back = bring_back(redis, tmp_path)
    try:
        recovered = time.monotonic()
        # The restarted Redis is empty: everything below came from the broker's buffer.
        wait_for(lambda: all_latest_in_redis(back, watcher, fleet.ids), 1.0,
                 "every latest state in Redis within 1 s of recovery")
        assert time.monotonic() - recovered <= 1.0
        wait_for(lambda: json.loads(http_get(broker, "/readyz")[1]).get("status") == "ready", 3,
                 "/readyz ready again")
        assert broker.alive()
    finally:
        back.stop()


def sos_entries(redis) -> list:
    return rcli(redis, ("XRANGE", "fleetmq:sos", "-", "+"))


def test_sos_persisted_before_delivery_and_after_outage(fleetmq_factory, store, tmp_path):
    """On one redis-server and on a 3-master Redis Cluster (every node stopped)."""
    redis = store
    broker = fleetmq_factory(*redis_flags(redis))
    operator = connected(broker.addr)
    operator.subscribe("events/+/sos", 1)
    driver = connected(broker.addr)
    vehicle = unique("sos")

    code, _ = driver.publish(f"fleet/{vehicle}/sos", b"help-1", 1)
    assert reason_value(code) < 0x80
    operator.wait_messages(1)
    # Persisted before anyone was notified: already in the stream when the event arrived.
    entries = sos_entries(redis)
    assert vehicle in entries and "help-1" in entries

    redis.stop()
    code, _ = driver.publish(f"fleet/{vehicle}/sos", b"help-2", 1, timeout=10)
    assert reason_value(code) < 0x80
    # Persisted before the PUBACK: in the local log (the broker's working directory).
    assert "help-2" in (tmp_path / "fleetmq-data" / "sos.log").read_text()
    messages = operator.wait_messages(2)
    event = json.loads(messages[1].payload)
    assert messages[1].topic == f"events/{vehicle}/sos" and event["kind"] == "sos"

    back = bring_back(redis, tmp_path)
    try:
        wait_for(lambda: "help-2" in sos_entries(back), 3, "the SOS written once Redis is back")
        assert vehicle in sos_entries(back)
    finally:
        back.stop()


@pytest.mark.parametrize("kind", ["single", "cluster"])
def test_redis_down_at_start_serves_and_writes_once_up(fleetmq_factory, tmp_path, kind):
    """One redis-server, or a 3-master Redis Cluster created while the broker runs."""
    if kind == "single":
        port = free_port()
        broker = fleetmq_factory("--redis", f"redis://127.0.0.1:{port}/")
    else:
        ports = RedisCluster.free_ports()
        broker = fleetmq_factory("--redis-cluster", RedisCluster.seeds_of(ports))
    assert json.loads(http_get(broker, "/readyz")[1]).get("status") == "degraded"
    watcher = connected(broker.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(broker.addr)
    fleet = Fleet(10, "d")
    for _ in range(2):
        for v in fleet.ids:
            fleet.publish_next(driver, v)
    wait_for(lambda: all(n == 2 for _, n in latest_states(watcher).values())
             and len(latest_states(watcher)) == 10, 10, "states served without Redis")
    server = (redis_on(port, tmp_path) if kind == "single"
              else RedisCluster.start(tmp_path / "cluster", ports))
    try:
        # A deadline, not a speed target: the writer retries with a back-off of up to 2 s and a
        # cluster client must first discover the new cluster's slots (on a loaded CI box that
        # took over 2 s once).
        wait_for(lambda: all_latest_in_redis(server, watcher, fleet.ids), 15,
                 "states written once Redis is up")
        wait_for(lambda: metric(broker, "fleetmq_redis_up") == 1, 15, "fleetmq_redis_up 1")
    finally:
        server.stop()


def test_redis_down_at_start_restores_what_it_did_not_see_once_up(fleetmq_factory, redis,
                                                                   tmp_path):
    """Redis holds state from an earlier run but is down when the broker starts. Once Redis is
    reachable the broker restores the vehicles it has not seen since start (REST, retained
    `vehicles/{id}`, filters) before writing, and the vehicles it has seen keep its own state."""
    first = fleetmq_factory("--redis", redis.url)
    watcher = connected(first.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(first.addr)
    fleet = Fleet(4, "late")
    for _ in range(3):
        for v in fleet.ids:
            fleet.publish_next(driver, v)
    wait_for(lambda: all_latest_in_redis(redis, watcher, fleet.ids)
             and all(n == 3 for _, n in latest_states(watcher).values()), 10, "states in Redis")
    before = {v: s for v, (s, _) in latest_states(watcher).items()}
    first.proc.kill()
    first.proc.wait()
    # Keep Redis's data and bring it back later on another port.
    assert rcli(redis, ("SAVE",)) == ["OK"]
    redis.stop()
    port = free_port()
    second = fleetmq_factory("--redis", f"redis://127.0.0.1:{port}/")
    seen, unseen = fleet.ids[0], fleet.ids[1:]
    # One vehicle reports to the new broker while Redis is down: a fresh track, a later fix.
    late_driver = connected(second.addr)
    fleet.sent[seen] += 5
    fleet.publish_next(late_driver, seen)
    own = fleet.fix(seen, fleet.sent[seen] - 1)
    assert http_get(second, f"/api/v1/vehicles/{unseen[0]}")[0] == 404
    back = redis_on(port, tmp_path)
    try:
        for v in unseen:
            status, body = wait_for(
                lambda v=v: (lambda r: r if r[0] == 200 else None)(
                    http_get(second, f"/api/v1/vehicles/{v}")), 10, f"{v} restored")
            got = json.loads(body)
            assert (got["ts"], got["lat"]) == (before[v]["ts"], before[v]["lat"])
        retained = connected(second.addr)
        retained.subscribe("vehicles/#", 0)
        wait_for(lambda: set(latest_states(retained)) >= set(fleet.ids), 5, "retained states")
        assert latest_states(retained)[seen][0]["ts"] == own["ts"], "its own, newer state"
        wait_for(lambda: (redis_states(back, [seen])[seen] or {}).get("ts") == own["ts"], 5,
                 "the seen vehicle's new state written")
        stored = redis_states(back, unseen)
        assert all(stored[v]["ts"] == before[v]["ts"] for v in unseen)
        # The restored filters continue: the last fix again is a duplicate, not a new state.
        v = unseen[0]
        retained.clear()
        code, _ = late_driver.publish(f"fleet/{v}/location",
                                      json.dumps(fleet.fix(v, fleet.sent[v] - 1)), 1)
        assert reason_value(code) < 0x80
        fleet.publish_next(late_driver, v)
        wait_for(lambda: latest_states(retained).get(v), 5, "the continuing fix")
        assert latest_states(retained)[v][1] == 1, "the repeated fix was not forwarded"
    finally:
        back.stop()


def test_sigterm_flushes_latest_states(fleetmq_factory, redis):
    broker = fleetmq_factory("--redis", redis.url)
    watcher = connected(broker.addr)
    watcher.subscribe("vehicles/#", 0)
    driver = connected(broker.addr)
    fleet = Fleet(10, "t")
    for v in fleet.ids:
        fleet.publish_next(driver, v)
    wait_for(lambda: len(latest_states(watcher)) == 10, 5, "10 states")
    assert broker.terminate() == 0
    # On SIGTERM the vehicles go offline as their driver connection closes; whatever the last
    # state was, it reached Redis before the process exited.
    stored = redis_states(redis, fleet.ids)
    for v in fleet.ids:
        assert stored[v] is not None and stored[v]["ts"] == fleet.fix(v, 0)["ts"]
