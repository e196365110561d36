//! The map page in headless Chromium (when `/usr/bin/chromium` exists): serves the app with a feed
//! of vehicles moving along the bundled Cairns routes (one off route, one offline), loads `/` through the DevTools protocol, waits
//! until vehicles are drawn and frames advance, and saves a screenshot to `target/map.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleetmq_bridge::{BridgeConfig, Hub, HubConfig};
use futures_util::{SinkExt, StreamExt};
use geo_engine::{EventKind, NextStop, VehicleStatus};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The line of each route in a FeatureCollection (the first shape of each `route_id`).
fn route_lines(fc: &Value) -> Vec<(String, Vec<[f64; 2]>)> {
    let mut out: Vec<(String, Vec<[f64; 2]>)> = Vec::new();
    for f in fc["features"].as_array().into_iter().flatten() {
        if f["geometry"]["type"] != "LineString" {
            continue;
        }
        let id = f["properties"]["route_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if out.iter().any(|(r, _)| *r == id) {
            continue;
        }
        let coords: Vec<[f64; 2]> = f["geometry"]["coordinates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some([c[0].as_f64()?, c[1].as_f64()?]))
            .collect();
        if coords.len() >= 2 {
            out.push((id, coords));
        }
    }
    out
}

/// The point a fraction `f` (0..1) of the way along a line, by vertex index.
fn along(line: &[[f64; 2]], f: f64) -> (f64, f64) {
    let x = f.clamp(0.0, 1.0) * (line.len() - 1) as f64;
    let i = (x.floor() as usize).min(line.len() - 2);
    let t = x - i as f64;
    let (a, b) = (line[i], line[i + 1]);
    (a[1] + (b[1] - a[1]) * t, a[0] + (b[0] - a[0]) * t)
}

const VEHICLES: usize = 12;

/// Moves vehicles along the routes every 200 ms until aborted: bus-3 detours (off route), bus-5
/// is offline.
fn feed(hub: Hub, lines: Vec<(String, Vec<[f64; 2]>)>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t: i64 = 0;
        loop {
            t += 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            for v in 0..VEHICLES {
                let (route, line) = &lines[v % lines.len()];
                let f = ((t as f64) * 0.001 + v as f64 * 0.37) % 1.0;
                let (lat, lon) = along(line, f);
                let (lat2, lon2) = along(line, f + 0.001);
                let heading = (lon2 - lon)
                    .atan2(lat2 - lat)
                    .to_degrees()
                    .rem_euclid(360.0);
                let id = format!("bus-{v}");
                let mut s = (*state(&id, lat, lon, Some(route), Some("T1"), now)).clone();
                s.heading = Some(heading);
                if v == 3 {
                    s.lat += 0.004; // detouring
                    s.on_route = Some(false);
                    s.off_route_m = Some(440.0);
                }
                if v == 5 {
                    s.status = VehicleStatus::Offline;
                }
                s.next_stop = Some(NextStop {
                    id: "S8".into(),
                    name: "Stop 8".into(),
                    distance_m: 640.0,
                    eta: Some(now + 180_000),
                    scheduled: None,
                    delay_s: None,
                });
                hub.push_state(Arc::new(s));
            }
            if t % 10 == 0 {
                let (lat, lon) = hub.latest("bus-3").map_or((0.0, 0.0), |s| (s.lat, s.lon));
                let route = lines[3 % lines.len()].0.as_str();
                hub.push_event(event(
                    "bus-3",
                    EventKind::Deviation,
                    lat,
                    lon,
                    Some(route),
                    now,
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A DevTools connection to one page.
struct Cdp {
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("cdp send");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("cdp reply")
                .expect("cdp open")
                .expect("cdp ok");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("cdp json");
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.lines().count() >= 2
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not write {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PNG of the page.
async fn screenshot(cdp: &mut Cdp) -> Vec<u8> {
    let shot = cdp
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = decode_base64(shot["data"].as_str().expect("png data"));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    png
}

/// Writes a file under the workspace's `target/`.
fn save(bytes: &[u8], name: &str) {
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(name);
    std::fs::create_dir_all(out.parent().expect("parent")).expect("target dir");
    std::fs::write(&out, bytes).expect("write screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_page_draws_moving_vehicles() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipping: {CHROMIUM} not installed");
        return;
    }
    let routes = geo_engine::Network::bundled().routes_geojson();
    let lines = route_lines(&routes);
    assert!(lines.len() >= 4, "the bundled network has routes");
    let line_count = routes["features"].as_array().map_or(0, |fs| {
        fs.iter()
            .filter(|f| f["geometry"]["type"] == "LineString")
            .count()
    }) as u64;
    let hub = Hub::new(HubConfig::default());
    let config = BridgeConfig {
        routes_geojson: routes.clone(),
        ..BridgeConfig::default()
    };
    let app = fleetmq_bridge::app(hub.clone(), Arc::new(FakePort::default()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(fleetmq_bridge::serve(
        listener,
        app,
        std::future::pending(),
        1_000_000,
    ));
    let feeder = feed(hub.clone(), lines);

    let profile = std::env::temp_dir().join(format!("fleetmq-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).expect("profile dir");
    let mut chromium = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");

    let active = wait_for_file(&profile.join("DevToolsActivePort")).await;
    let mut lines = active.lines();
    let port = lines.next().unwrap_or_default().trim().to_owned();
    let path = lines.next().unwrap_or_default().trim().to_owned();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
        .await
        .expect("devtools");
    let mut cdp = Cdp {
        ws,
        session: String::new(),
        next_id: 0,
    };
    let target = cdp
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    cdp.session = attached["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    cdp.call("Page.enable", json!({})).await;
    cdp.call("Page.navigate", json!({"url": format!("http://{addr}/")}))
        .await;

    let probe = "JSON.stringify(window.__fleetmq || null)";
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let v = cdp.eval(probe).await;
        let v: Value = v
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        if v["vehicles"].as_u64().unwrap_or(0) >= VEHICLES as u64
            && v["routes"].as_u64() == Some(line_count)
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "map never drew the vehicles: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Vehicles move: a drawn position changes while frames advance.
    let pos =
        "JSON.stringify([window.__fleetmq.frames, document.getElementById('counts').textContent])";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v: Value = cdp
            .eval(pos)
            .await
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        if v[0].as_u64().unwrap_or(0) > first["frames"].as_u64().unwrap_or(0) + 30 {
            assert_eq!(
                v[1],
                format!("{VEHICLES} vehicles · 1 off route · 1 offline")
            );
            break;
        }
        assert!(Instant::now() < deadline, "frames do not advance: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An event reached the side list; clicking a vehicle shows its next stop.
    let deadline = Instant::now() + Duration::from_secs(15);
    while cdp
        .eval("document.querySelectorAll('#events li').length")
        .await
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no event listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cdp.eval("document.querySelector('#events li').click()")
        .await;
    let details = cdp
        .eval("document.getElementById('details').textContent")
        .await;
    assert!(
        details
            .as_str()
            .is_some_and(|d| d.contains("bus-3") && d.contains("Stop 8")),
        "{details}"
    );
    let png = screenshot(&mut cdp).await;
    save(&png, "map-zoomed.png");
    cdp.eval("document.getElementById('fit').click()").await;

    let png = screenshot(&mut cdp).await;
    save(&png, "map.png");

    feeder.abort();
    let _ = chromium.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}
