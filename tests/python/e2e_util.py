"""Helpers of the end-to-end suites (pipeline, bridge, map): plain HTTP calls against the
broker's `--http` listener, Prometheus text parsing, and planar geometry on the bundled routes
(a local equirectangular frame in metres, accurate to well under a metre over a few kilometres).

Nothing here sleeps for synchronisation; waiting is `harness.wait_for`.
"""

import bisect
import json
import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

EARTH_RADIUS_M = 6_371_008.8
HTTP_TIMEOUT = 10.0


# --- HTTP -------------------------------------------------------------------------------------

@dataclass
class HttpResponse:
    status: int
    headers: Dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def http(broker, method: str, path: str, body: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> HttpResponse:
    """One request to the broker's HTTP listener; error statuses are returned, not raised."""
    url = f"http://{broker.http_host}:{broker.http_port}{path}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return HttpResponse(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, dict(e.headers.items()), e.read())


def get_json(broker, path: str):
    resp = http(broker, "GET", path)
    assert resp.status == 200, f"GET {path}: {resp.status} {resp.body[:300]!r}"
    return resp.json()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def metrics(broker) -> Dict[str, float]:
    """`/metrics` as {'name{labels}': value} (labels exactly as rendered)."""
    text = http(broker, "GET", "/metrics").body.decode("utf-8")
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def family(sample: Dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s series whose labels include `labels` (e.g. every `source`)."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for key, value in sample.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest.rstrip("}").split(",") for w in wanted):
            total += value
    return total


def rejected(sample: Dict[str, float], reason: str, **labels: str) -> float:
    return family(sample, "fleetmq_updates_rejected_total", reason=reason, **labels)


# --- geometry ---------------------------------------------------------------------------------

@dataclass
class Frame:
    """Equirectangular projection around (lat0, lon0): x east, y north, metres."""
    lat0: float
    lon0: float

    def to_xy(self, lat: float, lon: float) -> Tuple[float, float]:
        k = math.pi / 180 * EARTH_RADIUS_M
        return ((lon - self.lon0) * k * math.cos(math.radians(self.lat0)), (lat - self.lat0) * k)

    def to_geo(self, x: float, y: float) -> Tuple[float, float]:
        k = math.pi / 180 * EARTH_RADIUS_M
        return (self.lat0 + y / k, self.lon0 + x / (k * math.cos(math.radians(self.lat0))))


def point_segment(p, a, b) -> Tuple[float, float]:
    """(distance from p to segment ab, fraction along ab of the nearest point)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    l2 = dx * dx + dy * dy
    t = 0.0 if l2 == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2))
    q = (a[0] + t * dx, a[1] + t * dy)
    return math.hypot(p[0] - q[0], p[1] - q[1]), t


@dataclass
class Polyline:
    """A route shape in a local frame, with cumulative arc length."""
    pts: List[Tuple[float, float]]
    cum: List[float] = field(default_factory=list)

    def __post_init__(self):
        self.cum = [0.0]
        for a, b in zip(self.pts, self.pts[1:]):
            self.cum.append(self.cum[-1] + math.hypot(b[0] - a[0], b[1] - a[1]))

    @property
    def length(self) -> float:
        return self.cum[-1]

    def at(self, s: float) -> Tuple[float, float]:
        s = max(0.0, min(self.length, s))
        i = max(0, min(len(self.pts) - 2, bisect.bisect_right(self.cum, s) - 1))
        seg = self.cum[i + 1] - self.cum[i]
        t = 0.0 if seg == 0 else (s - self.cum[i]) / seg
        a, b = self.pts[i], self.pts[i + 1]
        return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))

    def normal(self, s: float, span: float = 40.0) -> Tuple[float, float]:
        """Unit vector to the left of the direction of travel around arc `s`."""
        a, b = self.at(s - span), self.at(s + span)
        dx, dy = b[0] - a[0], b[1] - a[1]
        n = math.hypot(dx, dy) or 1.0
        return (-dy / n, dx / n)

    def project(self, p, from_s: float = 0.0) -> Tuple[float, float]:
        """(distance, arc) of the nearest point at or after arc `from_s`."""
        best = (math.inf, 0.0)
        for i, (a, b) in enumerate(zip(self.pts, self.pts[1:])):
            if self.cum[i + 1] < from_s:
                continue
            d, t = point_segment(p, a, b)
            s = self.cum[i] + t * (self.cum[i + 1] - self.cum[i])
            if s >= from_s and d < best[0]:
                best = (d, s)
        return best

    def distance(self, p) -> float:
        return min(point_segment(p, a, b)[0] for a, b in zip(self.pts, self.pts[1:]))


@dataclass
class Stop:
    stop_id: str
    name: str
    sequence: int
    xy: Tuple[float, float]
    arc: float = 0.0


@dataclass
class Shape:
    """One LineString of `/api/v1/routes` with its ordered stops, in a shared frame."""
    route_id: str
    shape_id: str
    corridor_m: float
    line: Polyline
    stops: List[Stop]


def load_shapes(geojson: dict, frame: Optional[Frame] = None) -> Tuple[Frame, List[Shape]]:
    """Every LineString of a routes FeatureCollection with its stops (matched by shape_id, or
    by route when the route has one shape), stops placed along the line in sequence order."""
    lines = [f for f in geojson["features"] if f["geometry"]["type"] == "LineString"]
    points = [f for f in geojson["features"] if f["geometry"]["type"] == "Point"]
    if frame is None:
        lon0, lat0 = lines[0]["geometry"]["coordinates"][0]
        frame = Frame(lat0, lon0)
    shapes = []
    per_route: Dict[str, int] = {}
    for f in lines:
        per_route[f["properties"]["route_id"]] = per_route.get(f["properties"]["route_id"], 0) + 1
    for f in lines:
        p = f["properties"]
        line = Polyline([frame.to_xy(lat, lon) for lon, lat in f["geometry"]["coordinates"]])
        mine = [s for s in points if s["properties"].get("route_id") == p["route_id"] and (
            s["properties"].get("shape_id") == p.get("shape_id") or per_route[p["route_id"]] == 1)]
        mine.sort(key=lambda s: s["properties"]["sequence"])
        stops, from_s = [], 0.0
        for s in mine:
            lon, lat = s["geometry"]["coordinates"]
            stop = Stop(str(s["properties"]["stop_id"]), s["properties"]["name"],
                        int(s["properties"]["sequence"]), frame.to_xy(lat, lon))
            _, stop.arc = line.project(stop.xy, from_s)
            from_s = stop.arc
            stops.append(stop)
        shapes.append(Shape(p["route_id"], p.get("shape_id", p["route_id"]),
                            float(p.get("corridor_m") or 50.0), line, stops))
    return frame, shapes


# --- processes --------------------------------------------------------------------------------

_LISTENING = re.compile(r"^fleetmq listening .*?\bmqtt=\[?([^\s\]]+?)\]?:(\d+)\b.*?\bhttp=\[?([^\s\]]+?)\]?:(\d+)")


class Piped:
    """A child process whose stdout and stderr are drained by threads (last lines kept)."""

    def __init__(self, args, cwd, new_session: bool = False):
        import collections
        import subprocess
        import threading
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=str(cwd),
                                     start_new_session=new_session)
        self.out = collections.deque(maxlen=400)
        self.err = collections.deque(maxlen=400)
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _drain(stream, sink):
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def text(self) -> str:
        return "stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(list(self.err)[-60:])

    def stop(self, timeout: float = 10.0):
        """SIGTERM, then SIGKILL if it does not exit in time."""
        import subprocess
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class DemoProcess(Piped):
    """`fleetmq demo` on loopback port 0; addresses from its `fleetmq listening` line."""

    def __init__(self, binary, workdir, buses: int, timeout: float = 30.0):
        from harness import wait_for
        super().__init__([binary, "demo", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0",
                          "--buses", buses], workdir)

        def listening():
            for line in list(self.out):
                m = _LISTENING.match(line)
                if m:
                    return m
            return self.proc.poll() is not None
        try:
            m = wait_for(listening, timeout, "the demo's listening line")
        except AssertionError:
            self.stop()
            raise
        if m is True:
            raise RuntimeError(f"fleetmq demo exited {self.proc.returncode}\n{self.text()}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.http_host, self.http_port = m.group(3), int(m.group(4))
