"""The OsmAnd / Traccar Client protocol on `--osmand` (docs/ingest-http.md), with the exact request
forms of Traccar Client (query string, and the JSON body of version 9) and of OsmAnd's URL template:
the processed state an MQTT subscriber and a WebSocket watcher see is the one an MQTT driver's
equivalent fix produces (speed converted from knots); hostile input gets a clear 4xx."""

import json
import threading
import time
import urllib.parse

import pytest
import requests

from e2e_util import metrics
from ingest_util import (KNOT_MS, LAT, LON, Watchers, base_url, error_of, metric, now_ms,
                         processed, raw_request, status_of, track)
from mqttc import connected, reason_value


@pytest.fixture(scope="module")
def broker(fleetmq_path, tmp_path_factory):
    from harness import BrokerProcess
    b = BrokerProcess.start(fleetmq_path, ["--osmand", "127.0.0.1:0"],
                            tmp_path_factory.mktemp("osmand"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def phone():
    """One keep-alive session, as a phone app keeps its connection."""
    s = requests.Session()
    yield s
    s.close()


def osmand(broker) -> str:
    return base_url(broker, "osmand") + "/"


def mqtt_twin(broker, vehicle: str, fix: dict) -> None:
    """Publishes the docs/topics-and-payloads.md#location-updates equivalent of an OsmAnd report as
    an MQTT driver."""
    driver = connected(broker.addr)
    code, _ = driver.publish(f"fleet/{vehicle}/location", json.dumps(fix), qos=1)
    assert reason_value(code) == 0
    driver.disconnect()


def same_as_mqtt(broker, watch, vehicle: str, twin: str, fix: dict) -> dict:
    """The state of `vehicle` (reported over OsmAnd) equals that of `twin` (the same fix over
    MQTT), over MQTT and over the WebSocket bridge; returns it."""
    mqtt_twin(broker, twin, fix)
    ts = fix["ts"]
    got, want = watch.mqtt_state(vehicle, ts), watch.mqtt_state(twin, ts)
    assert processed(got) == processed(want)
    assert processed(watch.ws_state(vehicle, ts)) == processed(watch.ws_state(twin, ts))
    return got


def test_traccar_client_query_string_with_speed_in_knots(broker, phone):
    watch = Watchers(broker, ["os-tc", "os-tc-twin"])
    before = metrics(broker)
    try:
        ts_s = int(time.time()) - 5
        # Traccar Client (Android 5-8, iOS): POST, everything in the query, empty body.
        query = (f"id=os-tc&timestamp={ts_s}&lat={LAT}&lon={LON}&speed=10.0&bearing=90.0"
                 f"&altitude=12.0&accuracy=5.0&batt=77.0&charge=false")
        resp = phone.post(f"{osmand(broker)}?{query}", timeout=10)
        assert resp.status_code == 200 and resp.content == b"", (resp.status_code, resp.text)
        fix = {"lat": LAT, "lon": LON, "ts": ts_s * 1000, "speed": 10.0 * KNOT_MS,
               "heading": 90.0, "altitude": 12.0, "accuracy": 5.0, "battery": 77.0}
        state = same_as_mqtt(broker, watch, "os-tc", "os-tc-twin", fix)
        assert state["speed"] == pytest.approx(5.14, abs=0.005), "10 knots is 5.14 m/s"
        assert state["altitude"] == 12.0 and state["battery"] == 77.0
        assert [r["speed"] for r in watch.raw("os-tc")] == [pytest.approx(10 * KNOT_MS)]
    finally:
        watch.close()
    after = metrics(broker)
    assert (metric(after, "fleetmq_updates_accepted_total", source="osmand")
            - metric(before, "fleetmq_updates_accepted_total", source="osmand")) == 1


def test_osmand_url_template_get(broker, phone):
    """OsmAnd's online tracking: GET with its template
    `?id=..&lat={0}&lon={1}&timestamp={2}&hdop={3}&altitude={4}&speed={5}` (timestamp in ms)."""
    watch = Watchers(broker, ["os-oa", "os-oa-twin"])
    try:
        ts = now_ms() - 3_000
        url = f"{osmand(broker)}?id=os-oa&lat={LAT}&lon={LON}&timestamp={ts}&hdop=1.5&altitude=8&speed=4"
        resp = phone.get(url, timeout=10)
        assert resp.status_code == 200 and resp.content == b""
        fix = {"lat": LAT, "lon": LON, "ts": ts, "speed": 4 * KNOT_MS, "accuracy": 7.5,
               "altitude": 8}
        same_as_mqtt(broker, watch, "os-oa", "os-oa-twin", fix)
    finally:
        watch.close()


def test_traccar_client_9_json_body(broker, phone):
    watch = Watchers(broker, ["os-j9", "os-j9-twin"])
    try:
        ts = now_ms() - 4_000
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1000)) + f".{ts % 1000:03d}Z"
        body = {"location": {"timestamp": iso, "coords": {
            "latitude": LAT, "longitude": LON, "accuracy": 6.0, "speed": 3.25, "heading": 180.0,
            "altitude": 31.0}, "is_moving": True, "odometer": 1200.5, "event": "motionchange",
            "battery": {"level": 0.42, "is_charging": False}, "activity": {"type": "in_vehicle"},
            "extras": {}}, "device_id": "os-j9"}
        resp = phone.post(osmand(broker), data=json.dumps(body), timeout=10,
                          headers={"Content-Type": "application/json"})
        assert resp.status_code == 200 and resp.content == b"", resp.text
        fix = {"lat": LAT, "lon": LON, "ts": ts, "speed": 3.25, "heading": 180.0,
               "accuracy": 6.0, "altitude": 31.0, "battery": 42.0}
        state = same_as_mqtt(broker, watch, "os-j9", "os-j9-twin", fix)
        assert state["speed"] == 3.25 and state["battery"] == 42.0
    finally:
        watch.close()


def test_form_body_and_location_parameter(broker, phone):
    ts_s = int(time.time()) - 6
    form = urllib.parse.urlencode({"deviceid": "os-form", "location": f"{LAT},{LON}",
                                   "timestamp": ts_s, "bearing": 10, "batt": 55})
    resp = phone.post(osmand(broker), data=form, timeout=10,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    state = phone.get(f"{base_url(broker)}/api/v1/vehicles/os-form", timeout=10).json()
    assert (state["raw_lat"], state["raw_lon"], state["ts"]) == (LAT, LON, ts_s * 1000)
    assert state["battery"] == 55 and state["heading"] == 10


@pytest.mark.parametrize("query, field", [
    ("lat=-16.92&lon=145.77", "id"),
    ("id=os-bad&lat=NaN&lon=145.77", "lat"),
    ("id=os-bad&lat=-16.92&lon=Infinity", "lon"),
    ("id=os-bad&lat=95&lon=145.77", "lat"),
    ("id=os-bad&lat=-16.92&lon=145.77&timestamp=3000-01-01T00:00:00Z", "ts"),
    ("id=os-bad&lat=-16.92&lon=145.77&timestamp=32503680000000", "ts"),
    ("id=os-bad&lat=-16.92&lon=145.77&timestamp=soon", "timestamp"),
    ("id=%FF%FE&lat=-16.92&lon=145.77", "query"),
    ("id=os-bad&lat=-16.92&lon=145.77&batt=250", "battery"),
])
def test_bad_reports_get_400_naming_the_field(broker, phone, query, field):
    before = metrics(broker)
    resp = phone.get(f"{osmand(broker)}?{query}", timeout=10)
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["code"] == "INVALID" and err["field"] == field, err
    after = metrics(broker)
    assert (metric(after, "fleetmq_updates_rejected_total", source="osmand")
            == metric(before, "fleetmq_updates_rejected_total", source="osmand") + 1)
    # The keep-alive connection still serves the next report.
    ok = phone.get(f"{osmand(broker)}?id=os-next&lat={LAT}&lon={LON}", timeout=10)
    assert ok.status_code == 200


def test_hostile_requests(broker, phone):
    host, port = broker.listeners["osmand"]
    # Bytes that are not UTF-8 (nor even URI characters) in the request line: hyper's own 400.
    reply = raw_request((host, port), b"GET /?id=\xff\xfe&lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    assert status_of(reply) == 400, reply[:200]
    assert phone.post(osmand(broker), data=b"{not json", timeout=10,
                      headers={"Content-Type": "application/json"}).status_code == 400
    assert phone.put(f"{osmand(broker)}?id=a&lat=1&lon=2", timeout=10).status_code == 405
    big = b"id=os-big&lat=1&lon=2&pad=" + b"x" * (1024 * 1024 + 1)
    resp = phone.post(osmand(broker), data=big, timeout=30)
    assert resp.status_code == 413 and error_of(resp)["code"] == "PAYLOAD_TOO_LARGE"
    start = now_ms() - 20 * 3600 * 1000
    locs = [{"timestamp": f["ts"], "coords": {"latitude": f["lat"], "longitude": f["lon"]}}
            for f in track(10_000, start)]
    resp = phone.post(osmand(broker), data=json.dumps({"device_id": "os-huge", "location": locs}),
                      timeout=30, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    resp = phone.post(osmand(broker), timeout=30, headers={"Content-Type": "application/json"},
                      data=json.dumps({"device_id": "os-batch", "location": locs[:2_000]}))
    assert resp.status_code == 200, resp.text


def test_a_slow_body_times_out_and_others_are_served(broker, phone):
    host, port = broker.listeners["osmand"]
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\nid=os-slow&lat=")
    started, replies = time.monotonic(), []
    t = threading.Thread(target=lambda: replies.append(raw_request((host, port), head)))
    t.start()
    for _ in range(5):
        ok = phone.get(f"{osmand(broker)}?id=os-quick&lat={LAT}&lon={LON}", timeout=10)
        assert ok.status_code == 200
    t.join(40)
    assert replies and status_of(replies[0]) == 408, replies
    assert 8 < time.monotonic() - started < 30
