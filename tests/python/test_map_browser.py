"""The live map in a real browser: `fleetmq demo --buses 12` on free ports, Debian's headless
Chromium driven over the DevTools protocol (websocket-client, no Playwright). The page reports
what it drew in `window.__fleetmq` (`{vehicles, frames, connected, routes}`); the test waits
until buses are drawn and move, then saves a screenshot to `target/map-demo.png`."""

import base64
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest
import websocket

from e2e_util import DemoProcess, Piped, get_json, http
from harness import wait_for

CHROMIUM = "/usr/bin/chromium"
ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "target" / "map-demo.png"
LATE_SHOT = ROOT / "target" / "map-demo-late.png"

# Selects a vehicle as a click on the canvas would: centre the map on it, then a pointer
# down/up at its place.
SELECT = """((id) => { const m = window.__fleetmqMap; const v = m.vehicles.get(id);
  if (!v) return false; m.centerOn(v.to, 15); const c = document.getElementById('map');
  const r = c.getBoundingClientRect(); const p = m.toScreen(v.to);
  const o = { clientX: r.left + p.x, clientY: r.top + p.y, pointerId: 1, bubbles: true };
  try { c.dispatchEvent(new PointerEvent('pointerdown', o)); } catch (e) {}
  c.dispatchEvent(new PointerEvent('pointerup', o)); return true; })(%s)"""
PANEL = """JSON.stringify({ text: document.getElementById('details').innerText,
  stops: [...document.querySelectorAll('#details ol.stops li')].map(li => ({
    text: li.innerText, late: !!li.querySelector('.delay.late') })) })"""

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent (scripts/setup.sh installs chromium)")


@pytest.fixture
def demo(fleetmq_path, tmp_path):
    broker = DemoProcess(fleetmq_path, tmp_path, 12)
    yield broker
    broker.stop()


class Browser:
    """A headless Chromium of our own (its own process group and profile directory)."""

    def __init__(self, profile: pathlib.Path):
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                "--window-size=1280,800", "about:blank"]
        self.chromium = Piped(args, profile.parent, new_session=True)
        self.proc = self.chromium.proc
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: self._port(port_file) or self.proc.poll() is not None, 30,
                 "DevToolsActivePort")
        port = self._port(port_file)
        if port is None:
            raise RuntimeError(f"chromium exited {self.proc.returncode}:\n{self.chromium.text()}")
        self.port = port

    @staticmethod
    def _port(path: pathlib.Path):
        try:
            first = path.read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            return None
        return int(first) if first.isdigit() else None

    def page_ws_url(self) -> str:
        def page():
            try:
                import urllib.request
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                            timeout=5) as r:
                    targets = json.loads(r.read())
            except OSError:
                return None
            return next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"),
                        None)
        return wait_for(page, 20, "a page target")

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own group: chromium and its helpers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Cdp:
    """One DevTools protocol session on a page target."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(method)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            return None
        return r.get("result", {}).get("value")

    def close(self):
        self.ws.close()


PROBE = "JSON.stringify(window.__fleetmq || null)"
CANVAS_HASH = """(() => { const c = document.querySelector('canvas');
  if (!c) return null; const d = c.toDataURL('image/png'); let h = 0;
  for (let i = 0; i < d.length; i++) h = (h * 31 + d.charCodeAt(i)) | 0; return h; })()"""


def probe(cdp):
    text = cdp.evaluate(PROBE)
    return json.loads(text) if text else None


def positions(broker):
    return {s["vehicle"]: (s["lat"], s["lon"]) for s in
            get_json(broker, "/api/v1/vehicles")["vehicles"]}


def test_map_draws_demo_buses_moving(demo, tmp_path):
    page = http(demo, "GET", "/")
    assert page.status == 200, page.status
    assert page.headers.get("content-type", "").startswith("text/html"), page.headers
    browser = Browser(tmp_path / "chromium-profile")
    cdp = None
    try:
        cdp = Cdp(browser.page_ws_url())
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        url = f"http://{demo.http_host}:{demo.http_port}/"
        nav = cdp.call("Page.navigate", url=url)
        assert "errorText" not in nav, nav
        first = wait_for(lambda: (lambda p: p and p["connected"] and p["vehicles"] > 0 and p)(
            probe(cdp)), 60, "the map drawing vehicles")
        assert first["routes"] >= 1, first
        api_before = positions(demo)
        canvas_before = cdp.evaluate(CANVAS_HASH)

        # The buses move: on the server (their positions change), on the page (frames keep
        # coming and the canvas differs).
        def moved():
            now = positions(demo)
            return [v for v in api_before if v in now and now[v] != api_before[v]]
        moved_ids = wait_for(moved, 30, "demo buses moving")
        later = wait_for(lambda: (lambda p: p and p["frames"] > first["frames"] + 5 and p)(
            probe(cdp)), 30, "more frames")
        canvas_after = wait_for(lambda: (lambda h: h != canvas_before and h)(
            cdp.evaluate(CANVAS_HASH)), 30, "the drawing to change")
        assert later["vehicles"] >= 1
        # Events reach the side list (the demo's buses arrive at stops all the time).
        listed = wait_for(lambda: cdp.evaluate("document.querySelectorAll('#events li').length"),
                          60, "events in the side list")
        assert later["vehicles"] <= len(positions(demo))

        # The late bus: its panel lists its next stops with ETAs, each late against the demo's
        # timetable, and says how late it is.
        def late_panel():
            cdp.evaluate(SELECT % json.dumps("bus-2"))
            panel = json.loads(cdp.evaluate(PANEL) or "null")
            ok = (panel and "bus-2" in panel["text"] and len(panel["stops"]) >= 2
                  and all(st["late"] for st in panel["stops"]) and "min late" in panel["text"])
            return panel if ok else None
        panel = wait_for(late_panel, 30, "bus-2's panel with late next stops")
        assert "next stops" in panel["text"].lower() and "bus-2/" in panel["text"], panel
        for st in panel["stops"]:
            assert "min" in st["text"] and "+" in st["text"], st
        api = get_json(demo, "/api/v1/vehicles/bus-2/stops")["stops"]
        assert panel["stops"][0]["text"].split("\n")[0] in (api[0]["name"], api[0]["id"]), (
            panel, api)
        LATE_SHOT.parent.mkdir(parents=True, exist_ok=True)
        LATE_SHOT.write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot",
                                                        format="png")["data"]))
        # An on-time bus of the same route lists its stops too, none late.
        cdp.evaluate(SELECT % json.dumps("bus-3"))
        on_time = wait_for(lambda: (lambda p: p and "bus-3" in p["text"] and p["stops"] and p)(
            json.loads(cdp.evaluate(PANEL) or "null")), 30, "bus-3's panel")
        assert not any(st["late"] for st in on_time["stops"]), on_time
        cdp.evaluate(SELECT % json.dumps("bus-2"))
        shot = cdp.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
        print(f"map: {later} drawn; {len(moved_ids)} buses moved; {listed} events listed; canvas "
              f"{canvas_before} -> {canvas_after}; screenshot {SCREENSHOT} "
              f"({len(png)} bytes, sha1 {hashlib.sha1(png).hexdigest()[:10]})")
    finally:
        if cdp is not None:
            cdp.close()
        browser.close()


def test_vehicle_panel_shows_altitude_and_battery_of_an_osmand_phone(fleetmq_factory, tmp_path):
    """A phone reports over the OsmAnd protocol (altitude, battery); clicking its `online` event
    in the side list opens its panel, which shows both."""
    broker = fleetmq_factory("--osmand", "127.0.0.1:0")
    host, port = broker.listeners["osmand"]
    browser = Browser(tmp_path / "chromium-profile")
    cdp = None
    try:
        cdp = Cdp(browser.page_ws_url())
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        nav = cdp.call("Page.navigate", url=f"http://{broker.http_host}:{broker.http_port}/")
        assert "errorText" not in nav, nav
        wait_for(lambda: (probe(cdp) or {}).get("connected"), 60, "the map connected")
        query = (f"id=panel-phone&lat=-16.9203&lon=145.7710&timestamp={int(time.time())}"
                 f"&speed=5&altitude=123.4&batt=87")
        import urllib.request
        with urllib.request.urlopen(f"http://{host}:{port}/?{query}", timeout=10) as r:
            assert r.status == 200
        click = """(() => { const li = [...document.querySelectorAll('#events li')]
          .find(li => li.textContent.includes('panel-phone'));
          if (!li) return false; li.click(); return true; })()"""
        wait_for(lambda: cdp.evaluate(click), 30, "the phone's event in the side list")
        panel = wait_for(lambda: (lambda t: t and "Battery" in t and t)(
            cdp.evaluate("document.getElementById('details').innerText")), 10, "the panel")
        assert "Altitude" in panel and "123 m" in panel, panel
        assert "87 %" in panel and "panel-phone" in panel, panel
    finally:
        if cdp is not None:
            cdp.close()
        browser.close()
