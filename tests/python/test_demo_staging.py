"""`fleetmq demo` is staged for a first-time visitor: within a minute the buses of the shared
route are spread along it (not stacked at its first stop), `bus-1` takes its detour (a
`deviation` event), and `bus-2` runs late (it drives slower than the others on its route and is
minutes behind the demo's timetable, while the others keep to it)."""

import math

from e2e_util import DemoProcess, get_json
from harness import wait_for


def distance_m(a, b) -> float:
    k = math.pi / 180 * 6_371_008.8
    return math.hypot((a[1] - b[1]) * k * math.cos(math.radians(a[0])), (a[0] - b[0]) * k)


def test_demo_shows_spread_buses_a_detour_and_a_late_bus(fleetmq_path, tmp_path):
    demo = DemoProcess(fleetmq_path, tmp_path, 12)
    try:
        states = wait_for(lambda: (lambda v: v if len(v) == 12 else None)(
            {s["vehicle"]: s for s in get_json(demo, "/api/v1/vehicles")["vehicles"]}),
            30, "all 12 demo buses")
        shared = states["bus-1"]["route"]
        on_shared = [s for s in states.values() if s["route"] == shared]
        assert len(on_shared) == 4, [s["vehicle"] for s in on_shared]
        # Spread: every pair of buses on the shared route is more than 300 m apart.
        for i, a in enumerate(on_shared):
            for b in on_shared[i + 1:]:
                d = distance_m((a["lat"], a["lon"]), (b["lat"], b["lon"]))
                assert d > 300, (a["vehicle"], b["vehicle"], d)
        # The detour: bus-1 deviates within the first minute.
        dev = wait_for(lambda: get_json(demo, "/api/v1/events?vehicle=bus-1&kind=deviation")
                       ["events"], 60, "bus-1's deviation")
        assert dev[0]["off_route_m"] > 50
        # The late bus drives slower than the others of its route (all of them moving).
        def slower():
            speeds = {s["vehicle"]: s.get("speed") or 0 for s in
                      get_json(demo, f"/api/v1/vehicles?route={shared}")["vehicles"]}
            moving = {k: v for k, v in speeds.items() if v > 2}
            return len(moving) == 4 and all(moving["bus-2"] < v for k, v in moving.items()
                                            if k != "bus-2")
        wait_for(slower, 60, "bus-2 slower than the other moving buses of its route")
        # Against the demo's timetable bus-2 is minutes late, the others on time; their next
        # stops come with scheduled times and delays.
        late = get_json(demo, "/api/v1/vehicles/bus-2")
        assert late["delay_s"] >= 60 and late["trip"].startswith("bus-2/"), late
        stops = get_json(demo, "/api/v1/vehicles/bus-2/stops")["stops"]
        assert len(stops) >= 1 and all(s["delay_s"] >= 60 and s["scheduled"] < s["eta"]
                                       for s in stops), stops
        on_time = get_json(demo, "/api/v1/vehicles/bus-3")
        assert abs(on_time["delay_s"]) <= 30, on_time
    finally:
        demo.stop()
