"""History in PostgreSQL (docs/history.md) against a real PostgreSQL 15 started by the test
(pg_util): rows match the processed states, day partitions are created ahead and dropped by
retention, an acknowledged QoS 1 fix survives kill -9 of fleetmq and a replay after the restart
writes no duplicate, and a 10 s PostgreSQL outage under load neither stops the broker nor loses a
row.
"""

import datetime
import json
import threading
import time
import uuid
from urllib.parse import quote

import pytest

from e2e_util import get_json, http, metrics
from harness import wait_for
from mqttc import connected, reason_value
import pg_util

VEHICLE_TS_SQL = "(extract(epoch FROM ts) * 1000)::int8"


class Db:
    """One fresh database of the module's server, so tests do not see each other's rows."""

    def __init__(self, server: pg_util.PostgresProcess):
        self.server = server
        self.name = "t_" + uuid.uuid4().hex[:10]
        server.query(f"CREATE DATABASE {self.name}")
        self.url = f"postgres://{pg_util.USER}@127.0.0.1:{server.port}/{self.name}"

    def query(self, sql, params=None):
        import psycopg
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def count(self, table="fleetmq_positions", where="true", params=None) -> int:
        import psycopg
        try:
            return self.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0]
        except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
            return -1

    def partitions(self, table="fleetmq_positions"):
        rows = self.query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1", (table,))
        return [r[0] for r in rows]


def now_ms() -> int:
    return int(time.time() * 1000)


def day_name(days_from_today: int) -> str:
    d = datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=days_from_today)
    return d.strftime("%Y%m%d")


def fix(i: int, base_ts: int, lane: int = 0) -> dict:
    """Fixes ~32 m apart, 2 s apart: every one moves enough to be forwarded (no jitter). Lane 0
    reports its accuracy (3 to 7 m), the others none."""
    f = {"lat": -16.92 + lane * 0.002, "lon": 145.76 + i * 0.0003, "ts": base_ts + i * 2000,
         "speed": 16.0, "route": "110", "trip": f"T{lane}"}
    if lane == 0:
        f["accuracy"] = 3.0 + i % 5
    return f


def history_up(broker) -> bool:
    return metrics(broker).get("fleetmq_history_up") == 1.0


def start(fleetmq_factory, db: Db, *extra):
    broker = fleetmq_factory("--postgres", db.url, *extra)
    wait_for(lambda: history_up(broker), 20, "history writer connected")
    return broker


def test_rows_match_the_processed_states_and_partitions_are_made_ahead(pg, fleetmq_factory):
    db = Db(pg)
    broker = start(fleetmq_factory, db)
    sub = connected(broker.addr)
    sub.subscribe("vehicles/#")
    driver = connected(broker.addr)
    base = now_ms() - 600_000
    for lane, vehicle in enumerate(("hist-a", "hist-b")):
        for i in range(20):
            code, props = driver.publish(f"fleet/{vehicle}/location",
                                         json.dumps(fix(i, base, lane)), qos=1)
            assert reason_value(code) == 0, props
    # A QoS 1 fix is acknowledged once its row is committed: every row is there already.
    assert db.count() == 40

    def states():
        out = {}
        for m in list(sub.messages):
            s = json.loads(m.payload)
            if s.get("status") != "offline":
                out[(s["vehicle"], s["ts"])] = s
        return out
    got = wait_for(lambda: (lambda s: s if len(s) == 40 else None)(states()), 10, "40 states")
    rows = db.query(
        f"SELECT vehicle, {VEHICLE_TS_SQL}, lat, lon, raw_lat, raw_lon, speed, heading, route, "
        "trip, on_route, off_route_m, (extract(epoch FROM received_at) * 1000)::int8, accuracy "
        "FROM fleetmq_positions ORDER BY vehicle, ts")
    assert len(rows) == 40
    for (vehicle, ts, lat, lon, raw_lat, raw_lon, speed, heading, route, trip, on_route,
         off_route_m, received_at, accuracy) in rows:
        s = got[(vehicle, ts)]
        assert (lat, lon, raw_lat, raw_lon) == (s["lat"], s["lon"], s["raw_lat"], s["raw_lon"])
        # The fix's accuracy, through the processed state; none when the fix had none.
        sent = fix((ts - base) // 2000, base, 0 if vehicle == "hist-a" else 1).get("accuracy")
        assert accuracy == s.get("accuracy") == sent, (vehicle, ts, accuracy)
        assert speed == s.get("speed") and heading == s.get("heading")
        assert (route, trip, on_route) == (s.get("route"), s.get("trip"), s.get("on_route"))
        assert off_route_m == s.get("off_route_m")
        assert received_at == s["received_at"]
    kinds = {r[0] for r in db.query("SELECT kind FROM fleetmq_events WHERE vehicle = 'hist-a'")}
    assert "online" in kinds
    payload = db.query("SELECT payload FROM fleetmq_events WHERE vehicle = 'hist-a' "
                       "AND kind = 'online'")[0][0]
    assert payload["vehicle"] == "hist-a" and payload["kind"] == "online"
    # Partitions: yesterday, today and two days ahead, for both tables.
    for table in ("fleetmq_positions", "fleetmq_events"):
        names = db.partitions(table)
        for d in (-1, 0, 1, 2):
            assert f"{table}_p{day_name(d)}" in names, names

    # The API answers from PostgreSQL, in time order, in every format.
    h = get_json(broker, "/api/v1/vehicles/hist-a/history")
    assert h["source"] == "postgres" and h["count"] == 20
    assert [p["accuracy"] for p in h["positions"]] == [3.0 + i % 5 for i in range(20)]
    assert [p["ts"] for p in h["positions"]] == [base + i * 2000 for i in range(20)]
    iso_from = datetime.datetime.fromtimestamp((base + 10 * 2000) / 1000, datetime.timezone.utc)
    h = get_json(broker, f"/api/v1/vehicles/hist-a/history?from={quote(iso_from.isoformat())}"
                         f"&to={base + 14 * 2000}&limit=3")
    assert [p["ts"] for p in h["positions"]] == [base + i * 2000 for i in (10, 11, 12)]
    csv = http(broker, "GET", "/api/v1/vehicles/hist-b/history?format=csv")
    assert csv.status == 200 and csv.headers.get("x-fleetmq-source") == "postgres"
    lines = csv.body.decode().strip().split("\r\n")
    assert lines[0].startswith("vehicle,ts,lat,lon") and len(lines) == 21
    geo = get_json(broker, "/api/v1/vehicles/hist-b/history?format=geojson")
    assert geo["features"][0]["geometry"]["type"] == "LineString"
    assert len(geo["features"][0]["geometry"]["coordinates"]) == 20 and len(geo["features"]) == 21
    assert http(broker, "GET", "/api/v1/vehicles/hist-a/history?from=10&to=5").status == 400
    assert http(broker, "GET", "/api/v1/vehicles/hist-a/history?from=monday").status == 400
    assert http(broker, "GET", "/api/v1/vehicles/hist-a/history?format=xml").status == 400
    ev = get_json(broker, "/api/v1/events?vehicle=hist-a&kind=online")
    assert ev["source"] == "postgres" and ev["count"] >= 1
    assert all(e["vehicle"] == "hist-a" and e["kind"] == "online" for e in ev["events"])


def test_retention_drops_whole_partitions(pg, fleetmq_factory):
    db = Db(pg)
    broker = start(fleetmq_factory, db)
    assert broker.terminate() == 0
    for days in (-40, -10):
        name = day_name(days)
        d = datetime.datetime.strptime(name, "%Y%m%d").date()
        db.query(f"CREATE TABLE fleetmq_positions_p{name} PARTITION OF fleetmq_positions "
                 f"FOR VALUES FROM ('{d} 00:00+00') TO ('{d + datetime.timedelta(days=1)} 00:00+00')")
        db.query("INSERT INTO fleetmq_positions (vehicle, ts, lat, lon, raw_lat, raw_lon, "
                 "received_at) VALUES ('old', %s, 1, 2, 1, 2, now())",
                 (datetime.datetime.combine(d, datetime.time(12), datetime.timezone.utc),))
    assert db.count(where="vehicle = 'old'") == 2
    old, mid, today = (f"fleetmq_positions_p{day_name(d)}" for d in (-40, -10, 0))

    broker = start(fleetmq_factory, db, "--history-retention", "30d")
    wait_for(lambda: old not in db.partitions(), 10, "the 40-day-old partition dropped")
    assert mid in db.partitions() and today in db.partitions()
    assert db.count(where="vehicle = 'old'") == 1
    assert metrics(broker)["fleetmq_history_partitions_dropped_total"] >= 1
    assert broker.terminate() == 0

    start(fleetmq_factory, db, "--history-retention", "5d")
    wait_for(lambda: mid not in db.partitions(), 10, "the 10-day-old partition dropped")
    assert today in db.partitions() and db.count(where="vehicle = 'old'") == 0


def test_kill9_then_restart_no_missing_acknowledged_fix_and_no_duplicate(pg, fleetmq_factory):
    db = Db(pg)
    broker = start(fleetmq_factory, db)
    base = now_ms() - 900_000
    fixes = [fix(i, base) for i in range(300)]
    acked = []
    client = connected(broker.addr, client_id="kill9-driver")
    stop = threading.Event()

    def publish_all():
        for f in fixes:
            if stop.is_set():
                return
            info = client.publish_nowait("fleet/kill9/location", json.dumps(f), qos=1)
            deadline = time.monotonic() + 10
            while info.mid not in client._pubacks:
                if stop.is_set() or time.monotonic() > deadline:
                    return
                time.sleep(0.001)
            if reason_value(client._pubacks[info.mid][0]) == 0:
                acked.append(f["ts"])
    t = threading.Thread(target=publish_all, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= 80, 60, "80 acknowledged fixes")
    broker.proc.kill()  # SIGKILL: nothing is flushed
    broker.proc.wait()
    stop.set()
    t.join(10)
    client.abort()
    stored = {r[0] for r in db.query(f"SELECT {VEHICLE_TS_SQL} FROM fleetmq_positions "
                                     "WHERE vehicle = 'kill9'")}
    missing = [ts for ts in acked if ts not in stored]
    assert not missing, f"{len(missing)} acknowledged fixes missing after kill -9: {missing[:5]}"

    # The device re-sends everything it has (a replay): no row twice, none missing.
    broker = start(fleetmq_factory, db)
    replay = connected(broker.addr, client_id="kill9-driver-2")
    for chunk in range(0, len(fixes), 50):
        code, props = replay.publish("fleet/kill9/location",
                                     json.dumps(fixes[chunk:chunk + 50]), qos=1)
        assert reason_value(code) == 0, props
    rows = db.query(f"SELECT {VEHICLE_TS_SQL} FROM fleetmq_positions WHERE vehicle = 'kill9'")
    assert len(rows) == len(fixes)
    assert sorted(r[0] for r in rows) == [f["ts"] for f in fixes]


def test_postgres_down_10s_under_load_broker_serves_and_backlog_is_written(pg, fleetmq_factory):
    db = Db(pg)
    broker = start(fleetmq_factory, db)
    watcher = connected(broker.addr)
    watcher.subscribe("vehicles/#")
    driver = connected(broker.addr)
    base = now_ms() - 3_600_000
    sent = {"n": 0}
    stop = threading.Event()

    def load():
        # 4 vehicles, QoS 0, a fix each every ~10 ms (~300 fixes/s on this box), 11 m and
        # 500 ms apart (device time), so an hour of device time lasts the whole test.
        i = 0
        while not stop.is_set() and i < 7000:
            for lane in range(4):
                f = {"lat": -16.92 + lane * 0.002, "lon": 145.70 + i * 0.0001,
                     "ts": base + i * 500, "speed": 21.0}
                driver.publish_nowait(f"fleet/down-{lane}/location", json.dumps(f), qos=0)
                sent["n"] += 1
            i += 1
            time.sleep(0.01)
    t = threading.Thread(target=load, daemon=True)
    t.start()
    wait_for(lambda: db.count() > 40, 20, "rows flowing before the outage")

    pg.stop()
    wait_for(lambda: not history_up(broker), 10, "the writer noticing the outage")
    outage_end = time.monotonic() + 10
    acks = 0
    while time.monotonic() < outage_end:
        # The broker keeps serving: states still reach subscribers, QoS 1 is acknowledged
        # promptly (nobody waits for PostgreSQL while it is down), /readyz says degraded.
        seen = len(watcher.messages)
        wait_for(lambda: len(watcher.messages) > seen, 5, "states during the outage")
        code, _ = driver.publish("fleet/down-q1/location",
                                 json.dumps(fix(acks, base, 9)), qos=1, timeout=3)
        assert reason_value(code) == 0
        acks += 1
        ready = http(broker, "GET", "/readyz")
        assert ready.status == 200 and b"postgres" in ready.body, ready.body
    assert broker.alive()
    backlog = metrics(broker)["fleetmq_history_backlog"]
    assert backlog > 0
    pg.start()
    wait_for(lambda: history_up(broker), 20, "the writer reconnecting")
    stop.set()
    t.join(30)
    expected = sent["n"] + acks
    wait_for(lambda: db.count() == expected, 60,
             f"{expected} rows after recovery (have {db.count()})")
    m = metrics(broker)
    assert m["fleetmq_history_dropped_total"] == 0
    assert m["fleetmq_history_backlog"] == 0


def test_history_access_a_rider_sees_only_its_trip_span(pg, fleetmq_factory):
    from mqttc import V5
    from security_util import AuthClient, token
    db = Db(pg)
    secret = "history-secret"
    broker = start(fleetmq_factory, db, "--jwt-secret", secret)
    driver = AuthClient(broker.addr, "acc-driver", V5, username="acc-1",
                        password=token(secret, "acc-1", "driver"))
    driver.connect()
    base = now_ms() - 600_000
    for i in range(20):
        f = fix(i, base)
        f["trip"] = "T-early" if i < 10 else "T-late"
        code, props = driver.publish("fleet/acc-1/location", json.dumps(f), qos=1)
        assert reason_value(code) == 0, props

    def get(path, tok):
        return http(broker, "GET", path, headers={"Authorization": f"Bearer {tok}"})
    operator = token(secret, "op", "operator")
    rider = token(secret, "r1", "rider", trips=["T-early"])
    stranger = token(secret, "r2", "rider", trips=["T-none"])
    assert get("/api/v1/vehicles/acc-1/history", operator).json()["count"] == 20
    mine = get("/api/v1/vehicles/acc-1/history", rider).json()
    assert mine["count"] == 10 and {p["trip"] for p in mine["positions"]} == {"T-early"}
    assert get("/api/v1/vehicles/acc-1/history", stranger).status == 404
    assert http(broker, "GET", "/api/v1/vehicles/acc-1/history").status == 401
    assert get("/api/v1/events?vehicle=acc-1", stranger).json()["count"] == 0
    assert get("/api/v1/events?vehicle=acc-1", operator).json()["count"] >= 1


def test_without_postgres_the_answer_comes_from_memory_or_redis(fleetmq_factory, redis):
    for extra, source in (([], "memory"), (["--redis", redis.url], "redis")):
        broker = fleetmq_factory(*extra)
        driver = connected(broker.addr)
        base = now_ms() - 600_000
        for i in range(5):
            code, _ = driver.publish("fleet/mem-1/location", json.dumps(fix(i, base)), qos=1)
            assert reason_value(code) == 0

        def answer():
            h = get_json(broker, "/api/v1/vehicles/mem-1/history")
            return h if h["count"] == 5 else None
        h = wait_for(answer, 10, f"5 positions from {source}")
        assert h["source"] == source
        assert [p["ts"] for p in h["positions"]] == [base + i * 2000 for i in range(5)]
        assert all(p["vehicle"] == "mem-1" and "lat" in p for p in h["positions"])
        ev = get_json(broker, "/api/v1/events?vehicle=mem-1")
        assert ev["source"] == "memory" and any(e["kind"] == "online" for e in ev["events"])
        assert http(broker, "GET", "/api/v1/vehicles/mem-1/history?to=1&from=2").status == 400
        driver.disconnect()
        broker.stop()
