"""`POST /api/v1/vehicles/{id}/location` (docs/ingest-http.md) with `requests` over keep-alive: the
same pipeline, outputs and metrics as an MQTT driver; batches up to the documented maximum; the
per-vehicle publish rate; and hostile input, each a clear 4xx that leaves other clients alone."""

import json
import time

import pytest
import requests

from e2e_util import metrics
from harness import wait_for
from ingest_util import (LAT, LON, Watchers, error_of, location_url, metric, now_ms, processed,
                         raw_request, status_of, track)
from mqttc import connected, reason_value

MAX_BATCH = 5_000


@pytest.fixture(scope="module")
def session():
    s = requests.Session()
    yield s
    s.close()


def post(session, broker, vehicle, body, **kwargs) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return session.post(location_url(broker, vehicle), data=data, timeout=30,
                        headers={"content-type": "application/json"}, **kwargs)


def test_http_post_is_processed_like_an_mqtt_publish(fleetmq, session):
    """The same fix through HTTP (vehicle h) and MQTT (vehicle m): an MQTT subscriber and a
    WebSocket watcher see the same processed state, and the raw payload is routed on
    `fleet/{id}/location` both times; the metrics count it under `source="http"`."""
    watch = Watchers(fleetmq, ["ing-h1", "ing-m1"])
    before = metrics(fleetmq)
    try:
        ts = now_ms() - 2_000
        fix = {"lat": LAT, "lon": LON, "ts": ts, "speed": 6.5, "heading": 45, "accuracy": 4,
               "route": "110", "altitude": 21.5, "battery": 64}
        resp = post(session, fleetmq, "ing-h1", fix)
        assert resp.status_code == 202, resp.text
        assert resp.json() == {"accepted": 1, "rejected": 0}
        driver = connected(fleetmq.addr)
        code, _ = driver.publish("fleet/ing-m1/location", json.dumps(fix), qos=1)
        assert reason_value(code) == 0
        driver.disconnect()
        via_http, via_mqtt = watch.mqtt_state("ing-h1", ts), watch.mqtt_state("ing-m1", ts)
        assert processed(via_http) == processed(via_mqtt)
        assert via_http["altitude"] == 21.5 and via_http["battery"] == 64
        assert via_http["speed"] == 6.5 and via_http["route"] == "110"
        assert processed(watch.ws_state("ing-h1", ts)) == processed(watch.ws_state("ing-m1", ts))
        wait_for(lambda: watch.raw("ing-h1"), 10, "raw fleet/ing-h1/location")
        assert watch.raw("ing-h1") == [fix] and watch.raw("ing-m1") == [fix]
        rest = session.get(f"{location_url(fleetmq, 'ing-h1').rsplit('/', 1)[0]}", timeout=10)
        assert processed(rest.json()) == processed(via_mqtt)
    finally:
        watch.close()
    after = metrics(fleetmq)
    delta = lambda **l: (metric(after, "fleetmq_updates_accepted_total", **l)
                         - metric(before, "fleetmq_updates_accepted_total", **l))
    assert delta(source="http") == 1 and delta(source="mqtt") == 1


def test_batches_up_to_the_maximum_and_413_past_it(fleetmq, session):
    start = now_ms() - 20 * 3600 * 1000
    small = track(3, start)
    resp = post(session, fleetmq, "ing-batch", list(reversed(small)))  # processed in ts order
    assert resp.status_code == 202 and resp.json() == {"accepted": 3, "rejected": 0}, resp.text
    full = track(MAX_BATCH, start + 60_000)
    resp = post(session, fleetmq, "ing-batch-full", full)
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == MAX_BATCH
    state = session.get(location_url(fleetmq, "ing-batch-full").rsplit("/", 1)[0], timeout=10)
    assert state.json()["ts"] == full[-1]["ts"]
    huge = track(10_000, start)  # about 700 KB: under the body limit, over the batch maximum
    resp = post(session, fleetmq, "ing-batch-huge", huge)
    assert resp.status_code == 413, resp.text
    assert error_of(resp)["code"] == "PAYLOAD_TOO_LARGE" and "5000" in error_of(resp)["message"]
    # A batch with one bad fix among good ones: the good ones count, the bad one is reported.
    mixed = track(2, start + 100 * 60_000) + [{"lat": 95, "lon": LON, "ts": now_ms()}]
    resp = post(session, fleetmq, "ing-batch", mixed)
    assert resp.status_code == 202 and resp.json() == {"accepted": 2, "rejected": 1}


@pytest.mark.parametrize("body, field", [
    (b"{not json", "payload"),
    (b'{"lat": NaN, "lon": 145.77, "ts": 1}', "payload"),
    (b'{"lat": Infinity, "lon": 145.77, "ts": 1}', "payload"),
    (b'{"lat": 1e999, "lon": 145.77, "ts": 1}', "payload"),
    (b'{"lon": 145.77, "ts": 1}', "lat"),
    ("lat95", "lat"),
    ("year3000", "ts"),
    (b'{"lat": -16.92, "lon": 145.77, "ts": 1, "battery": 140}', "battery"),
    (b"[]", "payload"),
])
def test_invalid_payloads_get_400_naming_the_field(fleetmq, session, body, field):
    if body == "lat95":
        body = json.dumps({"lat": 95, "lon": LON, "ts": now_ms()})
    elif body == "year3000":
        body = json.dumps({"lat": LAT, "lon": LON, "ts": 32_503_680_000_000})
    before = metrics(fleetmq)
    resp = post(session, fleetmq, "ing-bad", body)
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["code"] == "INVALID" and err["field"] == field, err
    after = metrics(fleetmq)
    assert (metric(after, "fleetmq_updates_rejected_total", source="http")
            == metric(before, "fleetmq_updates_rejected_total", source="http") + 1)
    # The connection is still good for the next request.
    ok = post(session, fleetmq, "ing-bad-next", {"lat": LAT, "lon": LON, "ts": now_ms()})
    assert ok.status_code == 202


def test_body_over_the_limit_and_bad_ids(fleetmq_factory, session):
    broker = fleetmq_factory("--max-packet-size", "64KiB")
    big = json.dumps(track(1_000, now_ms() - 3600_000))  # about 70 KB
    assert len(big) > 64 * 1024
    resp = post(session, broker, "ing-big", big)
    assert resp.status_code == 413 and error_of(resp)["code"] == "PAYLOAD_TOO_LARGE"
    # Chunked, with no Content-Length to refuse up front.
    resp = session.post(location_url(broker, "ing-big"), data=iter([big.encode()]), timeout=30)
    assert resp.status_code == 413 and error_of(resp)["code"] == "PAYLOAD_TOO_LARGE"
    assert post(session, broker, "a+b", {"lat": LAT, "lon": LON, "ts": now_ms()}).status_code == 400
    host, port = broker.listeners["http"]
    reply = raw_request((host, port), b"POST /api/v1/vehicles/%FF%FE/location HTTP/1.1\r\n"
                        b"Host: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status_of(reply) == 400 and b'"BAD_REQUEST"' in reply, reply[:300]
    ok = post(session, broker, "ing-small", {"lat": LAT, "lon": LON, "ts": now_ms()})
    assert ok.status_code == 202


def test_a_slow_body_times_out_and_others_are_served(fleetmq, session):
    host, port = fleetmq.listeners["http"]
    started = time.monotonic()
    head = (b"POST /api/v1/vehicles/ing-slow/location HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"lat\":")
    import threading
    replies = []
    t = threading.Thread(target=lambda: replies.append(raw_request((host, port), head)))
    t.start()
    # Meanwhile another client is served at once.
    for _ in range(5):
        ok = post(session, fleetmq, "ing-fast", {"lat": LAT, "lon": LON, "ts": now_ms()})
        assert ok.status_code == 202
    t.join(40)
    elapsed = time.monotonic() - started
    assert replies and status_of(replies[0]) == 408, replies
    assert b'"TIMEOUT"' in replies[0]
    assert 8 < elapsed < 30, elapsed


def test_publish_rate_per_vehicle_gives_429_with_retry_after(fleetmq_factory, session):
    broker = fleetmq_factory("--max-publish-rate", "2")
    start, n = now_ms() - 3600_000, iter(range(10_000))

    def fix():
        i = next(n)  # 10 s and about 11 m apart: always valid
        return {"lat": round(LAT + i * 0.0001, 7), "lon": LON, "ts": start + i * 10_000}
    codes = [post(session, broker, "ing-rate", fix()).status_code for _ in range(2)]
    assert codes == [202, 202]
    resp = post(session, broker, "ing-rate", fix())
    assert resp.status_code == 429, resp.text
    assert error_of(resp)["code"] == "RATE_LIMITED"
    assert int(resp.headers["retry-after"]) >= 1
    # Another vehicle has its own budget.
    assert post(session, broker, "ing-rate-other", fix()).status_code == 202
    # The budget refills.
    wait_for(lambda: post(session, broker, "ing-rate", fix()).status_code == 202, 5,
             "a token after the refill")
