"""Static GTFS read in Python (zipfile + csv), and buses driven along a trip's timetable.

Used by the GTFS-Realtime suite to build traces independently of the broker: a trip's shape
(shapes.txt, or the line through its stops when it has none), where each stop lies along it, and
where the timetable puts a bus `late_s` behind schedule at any instant (linear between stops,
standing at a stop between its arrival and departure times).
"""

import csv
import datetime
import io
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional
from zoneinfo import ZoneInfo

from e2e_util import Frame, Polyline


def read_table(zip_path, name: str) -> List[Dict[str, str]]:
    with zipfile.ZipFile(zip_path) as z:
        if name not in z.namelist():
            return []
        text = z.read(name).decode("utf-8-sig")
    return [{k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(text))]


def gtfs_seconds(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    return h * 3600 + m * 60 + s


@dataclass
class TripPlan:
    trip_id: str
    route_id: str
    shape: Polyline
    frame: Frame
    stop_ids: List[str]
    stop_s: List[float]  # arc of each stop along the shape
    arrivals: List[int]  # seconds after the service day's start
    departures: List[int]
    day_start_ms: int  # service day start ("noon minus 12 h"), Unix ms

    def arc_at(self, t_s: float) -> float:
        """Where the timetable puts the vehicle `t_s` seconds into the service day."""
        if t_s <= self.departures[0]:
            return self.stop_s[0]
        for i in range(len(self.stop_s) - 1):
            if t_s <= self.departures[i]:
                return self.stop_s[i]
            if t_s < self.arrivals[i + 1]:
                span = max(1.0, self.arrivals[i + 1] - self.departures[i])
                f = (t_s - self.departures[i]) / span
                return self.stop_s[i] + f * (self.stop_s[i + 1] - self.stop_s[i])
        return self.stop_s[-1]

    def position(self, t_s: float, late_s: float, sideways_m: float = 0.0):
        s = self.arc_at(t_s - late_s)
        x, y = self.shape.at(s)
        if sideways_m:
            nx, ny = self.shape.normal(s)
            x, y = x + nx * sideways_m, y + ny * sideways_m
        return self.frame.to_geo(x, y)

    def ms(self, t_s: float) -> int:
        return self.day_start_ms + int(t_s * 1000)


class Gtfs:
    def __init__(self, zip_path):
        self.path = zip_path
        self.agency = read_table(zip_path, "agency.txt")[0]
        self.tz = ZoneInfo(self.agency["agency_timezone"])
        self.trips = {t["trip_id"]: t for t in read_table(zip_path, "trips.txt")}
        self.stops = {s["stop_id"]: s for s in read_table(zip_path, "stops.txt")}
        self.stop_times: Dict[str, List[Dict[str, str]]] = {}
        for st in read_table(zip_path, "stop_times.txt"):
            self.stop_times.setdefault(st["trip_id"], []).append(st)
        for rows in self.stop_times.values():
            rows.sort(key=lambda r: int(r["stop_sequence"]))
        self.shapes: Dict[str, List[Dict[str, str]]] = {}
        for p in read_table(zip_path, "shapes.txt"):
            self.shapes.setdefault(p["shape_id"], []).append(p)
        self.frequency_trips = {f["trip_id"] for f in read_table(zip_path, "frequencies.txt")}

    def day_start_ms(self, date: datetime.date) -> int:
        noon = datetime.datetime(date.year, date.month, date.day, 12, tzinfo=self.tz)
        return int(noon.timestamp() * 1000) - 12 * 3600 * 1000

    def find_trip(self, route_id: str, service_id: str, after_s: int,
                  min_stops: int = 2) -> str:
        """The trip of `route_id` on `service_id` departing first at or after `after_s`."""
        best: Optional[tuple] = None
        for tid, t in self.trips.items():
            if t["route_id"] != route_id or t["service_id"] != service_id:
                continue
            if tid in self.frequency_trips:
                continue
            rows = self.stop_times.get(tid, [])
            if len(rows) < min_stops:
                continue
            dep = gtfs_seconds(rows[0]["departure_time"])
            if dep >= after_s and (best is None or (dep, tid) < best):
                best = (dep, tid)
        assert best is not None, f"no trip of {route_id} after {after_s}"
        return best[1]

    def plan(self, trip_id: str, date: datetime.date) -> TripPlan:
        trip = self.trips[trip_id]
        rows = self.stop_times[trip_id]
        stops = [self.stops[r["stop_id"]] for r in rows]
        pts = self.shapes.get(trip.get("shape_id", ""), [])
        if pts:
            pts = sorted(pts, key=lambda p: int(p["shape_pt_sequence"]))
            geo = [(float(p["shape_pt_lat"]), float(p["shape_pt_lon"])) for p in pts]
        else:
            geo = [(float(s["stop_lat"]), float(s["stop_lon"])) for s in stops]
        frame = Frame(sum(g[0] for g in geo) / len(geo), sum(g[1] for g in geo) / len(geo))
        shape = Polyline([frame.to_xy(lat, lon) for lat, lon in geo])
        stop_s, from_s = [], 0.0
        for s in stops:
            _, arc = shape.project(frame.to_xy(float(s["stop_lat"]), float(s["stop_lon"])), from_s)
            stop_s.append(arc)
            from_s = arc
        return TripPlan(
            trip_id=trip_id, route_id=trip["route_id"], shape=shape, frame=frame,
            stop_ids=[r["stop_id"] for r in rows], stop_s=stop_s,
            arrivals=[gtfs_seconds(r["arrival_time"]) for r in rows],
            departures=[gtfs_seconds(r["departure_time"]) for r in rows],
            day_start_ms=self.day_start_ms(date))
