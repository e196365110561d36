"""Clients of the bridge end-to-end tests: a driver publishing fixes over MQTT, a `/ws` client
and an SSE client that collect what they receive on a thread, and `/mqtt` for paho.

Device times: every vehicle's fixes start 12 h in the past and advance 61 s a fix. That is
more than the pipeline's Kalman reset gap (60 s), so every state's `lat`/`lon` is the fix as
sent, and a vehicle may jump a few kilometres between fixes without tripping the teleport check.
"""

import http.client
import json
import math
import threading
import time
from typing import Callable, Dict, List, Optional

import websocket

from harness import wait_for
from mqttc import connected, reason_value

STEP_MS = 61_000
WS_TIMEOUT = 10.0


def now_ms() -> int:
    return int(time.time() * 1000)


def haversine_m(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


class Driver:
    """Publishes location fixes for any number of vehicles over one v5 MQTT connection."""

    def __init__(self, broker):
        self.client = connected(broker.addr)
        self.base = now_ms() - 12 * 3600 * 1000
        self.last: Dict[str, int] = {}

    def fix(self, vehicle: str, lat: float, lon: float, **extra) -> int:
        """Publishes one fix at QoS 1, checks it was accepted, and returns its `ts`."""
        ts = self.last.get(vehicle, self.base) + STEP_MS
        self.last[vehicle] = ts
        body = {"lat": lat, "lon": lon, "ts": ts, "speed": 5.0, **extra}
        code, props = self.client.publish(f"fleet/{vehicle}/location", json.dumps(body), qos=1)
        assert reason_value(code) == 0, (vehicle, body, code, props)
        return ts

    def fixes(self, batch) -> List[int]:
        """Publishes `(vehicle, lat, lon, extra)` fixes back to back at QoS 1, then waits for
        every PUBACK and checks each was accepted; returns their `ts`."""
        infos, out = [], []
        for vehicle, lat, lon, extra in batch:
            ts = self.last.get(vehicle, self.base) + STEP_MS
            self.last[vehicle] = ts
            body = {"lat": lat, "lon": lon, "ts": ts, "speed": 5.0, **extra}
            infos.append(self.client.publish_nowait(f"fleet/{vehicle}/location",
                                                    json.dumps(body), qos=1))
            out.append(ts)
        acks = self.client._pubacks  # filled by the client's network thread
        wait_for(lambda: all(i.mid in acks for i in infos), 30, f"{len(infos)} PUBACKs")
        refused = [reason_value(acks[i.mid][0]) for i in infos if reason_value(acks[i.mid][0])]
        assert not refused, refused
        return out

    def close(self):
        self.client.disconnect()


class Ws:
    """A `/ws` client whose received JSON messages are collected in order by a thread."""

    def __init__(self, broker, path: str = "/ws", **kwargs):
        url = f"ws://{broker.http_host}:{broker.http_port}{path}"
        self.ws = websocket.create_connection(url, timeout=WS_TIMEOUT, **kwargs)
        self.messages: List[dict] = []
        self.close_status: Optional[int] = None
        self.closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        self.ws.settimeout(None)
        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=False)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(data) >= 2:
                        self.close_status = int.from_bytes(data[:2], "big")
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    with self._lock:
                        self.messages.append(json.loads(data.decode("utf-8")))
        except (websocket.WebSocketException, OSError, ValueError):
            pass
        self.closed = True

    def send(self, msg) -> None:
        self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    def subscribe(self, sub: str, **criteria) -> dict:
        """Subscribes and returns the snapshot."""
        self.send({"op": "subscribe", "id": sub, **criteria})
        return self.wait(lambda m: m.get("type") == "snapshot" and m.get("sub") == sub,
                         f"snapshot of {sub}")

    def find(self, pred: Callable[[dict], bool]) -> Optional[dict]:
        with self._lock:
            return next((m for m in self.messages if pred(m)), None)

    def all(self, pred: Callable[[dict], bool] = lambda m: True) -> List[dict]:
        with self._lock:
            return [m for m in self.messages if pred(m)]

    def wait(self, pred: Callable[[dict], bool], what: str, timeout: float = WS_TIMEOUT) -> dict:
        return wait_for(lambda: self.find(pred), timeout, what)

    def wait_update(self, vehicle: str, ts: int, sub: Optional[str] = None,
                    timeout: float = WS_TIMEOUT) -> dict:
        return self.wait(lambda m: is_update(m, vehicle, ts, sub),
                         f"update of {vehicle} ts {ts}", timeout)

    def updates_of(self, vehicle: str) -> List[dict]:
        return self.all(lambda m: m.get("type") == "update" and m["vehicle"]["vehicle"] == vehicle)

    def close(self):
        try:
            self.ws.close(timeout=2)
        except (websocket.WebSocketException, OSError):
            pass


def is_update(m: dict, vehicle: str, ts: Optional[int] = None, sub: Optional[str] = None) -> bool:
    return (m.get("type") == "update" and m["vehicle"]["vehicle"] == vehicle
            and (ts is None or m["vehicle"]["ts"] == ts) and (sub is None or m.get("sub") == sub))


def snapshot_ids(snapshot: dict) -> List[str]:
    return [s["vehicle"] for s in snapshot["vehicles"]]


class Sse:
    """A `GET /api/v1/stream` client; each event is `(event name, parsed data)`."""

    def __init__(self, broker, query: str):
        self.conn = http.client.HTTPConnection(broker.http_host, broker.http_port, timeout=30)
        self.conn.request("GET", f"/api/v1/stream?{query}", headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.events: List[tuple] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        name, data = None, []
        try:
            while True:
                raw = self.resp.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        with self._lock:
                            self.events.append((name or "message", json.loads("\n".join(data))))
                    name, data = None, []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by `close()` (http.client raises AttributeError mid-chunk then)

    def find(self, pred) -> Optional[tuple]:
        with self._lock:
            return next((e for e in self.events if pred(e)), None)

    def all(self) -> List[tuple]:
        with self._lock:
            return list(self.events)

    def close(self):
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()
