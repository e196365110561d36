"""`--max-request-rate` (issue 19 item 5): REST, SSE and WebSocket opens per bearer token, else per
IP, per second; over it `429 RATE_LIMITED` with `Retry-After`, other clients unaffected, health
endpoints never limited.
"""

import time

import requests
import websocket

from harness import wait_for

RATE = 5


def url(broker, path: str) -> str:
    return f"http://{broker.http_host}:{broker.http_port}{path}"


def get(broker, path: str, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url(broker, path), headers=headers, timeout=5)


def test_rest_over_the_rate_gets_429_with_retry_after(fleetmq_factory):
    broker = fleetmq_factory("--max-request-rate", str(RATE))
    answers = [get(broker, "/api/v1/vehicles") for _ in range(RATE * 3)]
    codes = [a.status_code for a in answers]
    # A burst of RATE, then (well within a second on any machine) refusals.
    assert codes[:RATE] == [200] * RATE and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429)
    # One token a 1/RATE s: the next request in at most a second, rounded up.
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    # Not limited: health, metrics, the map.
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        assert get(broker, path).status_code == 200, path
    # The refused client is served again once its bucket refills.
    wait_for(lambda: get(broker, "/api/v1/vehicles").status_code == 200, 5,
             "served again after Retry-After")


def test_limit_is_per_token_and_covers_streams(fleetmq_factory):
    broker = fleetmq_factory("--max-request-rate", str(RATE))
    # Exhaust the anonymous (IP) bucket.
    wait_for(lambda: get(broker, "/api/v1/routes").status_code == 429, 5, "IP bucket empty")
    # Without authentication a token is not checked, but it names a different client.
    assert get(broker, "/api/v1/routes", token="someone-else").status_code == 200
    # SSE and WebSocket opens count against the same bucket: refused with 429 too.
    sse = requests.get(url(broker, "/api/v1/stream"), stream=True, timeout=5)
    try:
        assert sse.status_code == 429 and "Retry-After" in sse.headers
    finally:
        sse.close()
    try:
        websocket.create_connection(f"ws://{broker.http_host}:{broker.http_port}/ws", timeout=5)
        raise AssertionError("the WebSocket upgrade was not refused")
    except websocket.WebSocketBadStatusException as e:
        assert e.status_code == 429
    started = time.monotonic()
    wait_for(lambda: get(broker, "/api/v1/routes").status_code == 200, 5, "IP bucket refilled")
    assert time.monotonic() - started < 5
