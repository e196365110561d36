"""Helpers of the HTTP and OsmAnd ingest suites (docs/ingest-http.md): a `requests` session per
client (keep-alive, as phones and backends use), watchers that see the processed state over MQTT and
the WebSocket bridge, raw sockets for what `requests` will not send (slow bodies, bytes that are not
UTF-8), and the processed-state comparison between ingest paths.

Nothing here sleeps for synchronisation; waiting is `harness.wait_for`.
"""

import json
import socket
import time
from typing import Dict, Optional, Tuple

import requests

from bridge_util import Ws
from harness import wait_for
from mqttc import connected

# Cairns, on the bundled routes.
LAT, LON = -16.9203, 145.7710

# 1 knot in m/s, as the OsmAnd protocol's `speed` is read.
KNOT_MS = 1852.0 / 3600.0

# Fields that differ between two vehicles fed the same fix (who, and when the broker saw it).
PER_VEHICLE = {"vehicle", "received_at", "processed_at"}


def now_ms() -> int:
    return int(time.time() * 1000)


def base_url(broker, name: str = "http", scheme: str = "http") -> str:
    host, port = broker.listeners[name]
    return f"{scheme}://{host}:{port}"


def location_url(broker, vehicle: str, name: str = "http", scheme: str = "http") -> str:
    return f"{base_url(broker, name, scheme)}/api/v1/vehicles/{vehicle}/location"


def processed(state: dict) -> dict:
    """A processed state without what is per vehicle, for comparing ingest paths."""
    return {k: v for k, v in state.items() if k not in PER_VEHICLE}


def error_of(resp: requests.Response) -> dict:
    """The `error` object of a JSON error reply (asserting the reply is one)."""
    assert resp.headers.get("content-type", "").startswith("application/json"), \
        (resp.status_code, resp.headers, resp.content[:200])
    return resp.json()["error"]


class Watchers:
    """An MQTT subscriber to `vehicles/#` and `fleet/+/location`, and a `/ws` client subscribed
    to the given vehicles: the three places a processed fix shows up."""

    def __init__(self, broker, vehicles):
        self.mqtt = connected(broker.addr)
        self.mqtt.subscribe("vehicles/#")
        self.mqtt.subscribe("fleet/+/location")
        self.ws = Ws(broker)
        for i, v in enumerate(vehicles):
            self.ws.subscribe(f"s{i}", vehicle=v)

    def mqtt_state(self, vehicle: str, ts: int) -> dict:
        """The `vehicles/{vehicle}` state of the fix at `ts`, once it arrived over MQTT."""
        def find():
            for p in self.mqtt.payloads(f"vehicles/{vehicle}"):
                s = json.loads(p)
                if s["ts"] == ts:
                    return s
            return None
        return wait_for(find, 10, f"vehicles/{vehicle} with ts {ts}")

    def raw(self, vehicle: str):
        """Payloads routed on `fleet/{vehicle}/location`."""
        return [json.loads(p) for p in self.mqtt.payloads(f"fleet/{vehicle}/location")]

    def ws_state(self, vehicle: str, ts: int) -> dict:
        return self.ws.wait_update(vehicle, ts)["vehicle"]

    def close(self):
        self.ws.close()
        self.mqtt.disconnect()


def raw_request(addr: Tuple[str, int], head: bytes, timeout: float = 30.0) -> bytes:
    """Sends `head` (a request, possibly incomplete) on a fresh socket and reads the reply until
    the server closes or answers; what the server sent, possibly empty."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(head)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head_end = out.index(b"\r\n\r\n") + 4
                length = 0
                for line in out[:head_end].split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(out) >= head_end + length:
                    break
        return out


def status_of(reply: bytes) -> Optional[int]:
    """The status code of a raw HTTP/1.1 reply."""
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply[9:12])


def track(count: int, start_ms: int, step_ms: int = 10_000, lat: float = LAT, lon: float = LON,
          step_deg: float = 0.0001) -> list:
    """`count` valid docs/topics-and-payloads.md#location-updates fixes heading north, `step_ms`
    apart (about 11 m each)."""
    return [{"lat": round(lat + i * step_deg, 7), "lon": lon, "ts": start_ms + i * step_ms,
             "speed": 1.1} for i in range(count)]


def metric(sample: Dict[str, float], name: str, **labels) -> float:
    from e2e_util import family
    return family(sample, name, **labels)
