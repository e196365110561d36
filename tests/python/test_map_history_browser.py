"""The map page in headless Chromium with street tiles, events on load and history playback:
a local tile server (this module's fixture, PNG tiles on loopback) under `--map-tiles`, the grid
with `--map-tiles none` or unreachable tiles, the last events listed as soon as the page opens,
and a vehicle's stored track (PostgreSQL) replayed with the slider. Screenshots go to
`target/map-tiles.png`, `target/map-grid.png` and `target/map-playback.png`."""

import base64
import http.server
import json
import struct
import threading
import time
import zlib

import pytest

import pg_util
from e2e_util import get_json
from harness import free_port, wait_for
from mqttc import connected, reason_value
from test_map_browser import CHROMIUM, ROOT, Browser, Cdp, probe  # noqa: F401 (skip marker)
from test_map_browser import pytestmark  # noqa: F401

TILE_RGB = (222, 205, 160)  # a sandy colour no other part of the page uses


def png(width: int, height: int, rgb) -> bytes:
    """A solid PNG with a darker 2-pixel frame, so tile edges are visible on screenshots."""
    dark = bytes(max(0, c - 60) for c in rgb)
    fill = bytes(rgb)
    rows = []
    for y in range(height):
        edge_row = y < 2 or y >= height - 2
        row = b"".join(dark if edge_row or x < 2 or x >= width - 2 else fill for x in range(width))
        rows.append(b"\x00" + row)
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


class TileServer:
    """Serves the same PNG for every /{z}/{x}/{y}.png on a loopback port; counts requests."""

    def __init__(self):
        tile = png(256, 256, TILE_RGB)
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(tile)))
                self.end_headers()
                self.wfile.write(tile)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/{{z}}/{{x}}/{{y}}.png"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tiles():
    server = TileServer()
    yield server
    server.close()


@pytest.fixture
def page(tmp_path):
    browser = Browser(tmp_path / "chromium-profile")
    cdp = Cdp(browser.page_ws_url())
    cdp.call("Page.enable")
    cdp.call("Runtime.enable")
    yield cdp
    cdp.close()
    browser.close()


def open_map(cdp, broker):
    nav = cdp.call("Page.navigate", url=f"http://{broker.http_host}:{broker.http_port}/")
    assert "errorText" not in nav, nav
    return wait_for(lambda: (lambda p: p and p["connected"] and p["frames"] > 2 and p)(probe(cdp)),
                    60, "the map connected and drawing")


def screenshot(cdp, name: str) -> bytes:
    data = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    path = ROOT / "target" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


PIXEL = """(() => { const c = document.getElementById('map'); const x = c.getContext('2d');
  const d = x.getImageData(Math.round(c.width * %f), Math.round(c.height * %f), 1, 1).data;
  return [d[0], d[1], d[2]]; })()"""


def canvas_pixel(cdp, fx: float, fy: float):
    return cdp.evaluate(PIXEL % (fx, fy))


def publish_track(broker, vehicle: str, n: int, base_ts: int):
    """`n` QoS 1 fixes eastwards ~32 m apart, a few hundred metres off route 110 (a deviation)."""
    driver = connected(broker.addr)
    track = []
    for i in range(n):
        f = {"lat": -16.92, "lon": 145.7700 + i * 0.0003, "ts": base_ts + i * 2000, "speed": 16.0,
             "route": "110"}
        code, props = driver.publish(f"fleet/{vehicle}/location", json.dumps(f), qos=1)
        assert reason_value(code) == 0, props
        track.append(f)
    driver.disconnect()
    return track


def test_tiles_drawn_events_on_load_and_playback_of_the_stored_track(
        fleetmq_factory, tiles, pg, page):
    db = "m_" + str(free_port())
    pg.query(f"CREATE DATABASE {db}")
    url = f"postgres://{pg_util.USER}@127.0.0.1:{pg.port}/{db}"
    broker = fleetmq_factory("--map-tiles", tiles.url, "--postgres", url)
    wait_for(lambda: "fleetmq_history_up 1" in
             __import__("e2e_util").http(broker, "GET", "/metrics").body.decode(), 20,
             "history writer up")
    base = int(time.time() * 1000) - 300_000
    track = publish_track(broker, "pb-1", 30, base)
    events_before = get_json(broker, "/api/v1/events")["count"]
    assert events_before >= 2  # online, deviation (and more)

    first = open_map(page, broker)
    cfg = get_json(broker, "/map/config.json")
    assert cfg["tile_url"] == tiles.url and "OpenStreetMap" in cfg["attribution"]
    # Tiles: requested from our server, loaded and drawn; the canvas shows their colour.
    p = wait_for(lambda: (lambda p: p["tiles"]["loaded"] > 0 and p["tiles"]["drawn"] > 0 and p)(
        probe(page)), 30, "tiles drawn")
    assert p["tiles"]["mode"] == "tiles" and tiles.requests > 0
    def tile_coloured():
        corner = canvas_pixel(page, 0.97, 0.05)
        return corner and all(abs(a - b) <= 70 for a, b in zip(corner, TILE_RGB))
    wait_for(tile_coloured, 20, "the tile colour in the map's corner")
    assert "OpenStreetMap contributors" in page.evaluate("document.getElementById('attrib').textContent")
    # Events on load: the snapshot's last events fill the list before any new event.
    # (An `offline` of pb-1 may still arrive live after its driver left: the list then grows
    # with the server's count.)
    def all_listed():
        n = page.evaluate("document.querySelectorAll('#events li').length")
        return n and n == min(get_json(broker, "/api/v1/events")["count"], 50) and n
    listed = wait_for(all_listed, 20, "every event listed on load")
    assert listed >= min(events_before, 50)
    kinds = page.evaluate("[...document.querySelectorAll('#events li .kind')].map(e => e.textContent)")
    assert "deviation" in kinds, kinds
    screenshot(page, "map-tiles.png")

    # Playback: pick pb-1 and the span of its track, load, play; the marker walks the track.
    wait_for(lambda: page.evaluate("[...document.querySelectorAll('#pb-vehicle option')]"
                                   ".some(o => o.value === 'pb-1')"), 20, "pb-1 in the list")
    span = (f"document.getElementById('pb-vehicle').value = 'pb-1';"
            f"document.getElementById('pb-from').value = new Date({base - 60_000} - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);"
            f"document.getElementById('pb-to').value = new Date({base + 120_000} - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);"
            "document.getElementById('pb-load').click(); true")
    assert page.evaluate(span)
    pb = wait_for(lambda: (lambda p: p["playback"]["points"] and p["playback"])(probe(page)), 20,
                  "the track loaded")
    assert pb["source"] == "postgres" and len(pb["points"]) == len(track)
    assert [q["ts"] for q in pb["points"]] == [f["ts"] for f in track]
    start = pb["marker"]
    assert (start["ts"], start["lat"]) == (track[0]["ts"], pb["points"][0]["lat"])
    page.evaluate("document.getElementById('pb-play').click()")
    stored = {(q["lat"], q["lon"]) for q in pb["points"]}
    seen = []

    def moved_far():
        m = probe(page)["playback"]["marker"]
        assert (m["lat"], m["lon"]) in stored, m  # always on the stored track
        seen.append(m["lon"])
        return m["ts"] >= track[len(track) // 2]["ts"] and m
    later = wait_for(moved_far, 30, "the marker moving along the track")
    assert later["lon"] > start["lon"] and seen == sorted(seen)
    assert page.evaluate("document.getElementById('pb-slider').value") != "0"
    screenshot(page, "map-playback.png")
    assert first["routes"] >= 1


def test_map_tiles_none_draws_the_grid(fleetmq_factory, tiles, page):
    broker = fleetmq_factory("--map-tiles", "none")
    open_map(page, broker)
    assert get_json(broker, "/map/config.json")["tile_url"] is None
    p = wait_for(lambda: (lambda p: p["frames"] > 10 and p)(probe(page)), 30, "frames")
    assert p["tiles"]["mode"] == "grid" and p["tiles"]["loaded"] == 0
    assert tiles.requests == 0
    # The background is the page's plain colour, not a tile's.
    assert canvas_pixel(page, 0.97, 0.05) == [233, 238, 242]
    screenshot(page, "map-grid.png")


def test_unreachable_tiles_fall_back_to_the_grid(fleetmq_factory, page):
    dead = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"  # nothing listens there
    broker = fleetmq_factory("--map-tiles", dead)
    open_map(page, broker)
    p = wait_for(lambda: (lambda p: p["tiles"]["mode"] == "grid" and p)(probe(page)), 30,
                 "the fallback to the grid")
    assert p["tiles"]["loaded"] == 0 and p["tiles"]["failed"] >= 1
    assert "unavailable" in page.evaluate("document.getElementById('attrib').textContent")
