//! REST, SSE, ops and `/mqtt` endpoints, driven with `oneshot` where no socket is needed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use fleetmq_bridge::{BridgeConfig, Hub, HubConfig, Readiness};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

fn setup() -> (Router, Hub, Arc<FakePort>) {
    let hub = Hub::new(HubConfig::default());
    let port = Arc::new(FakePort::default());
    let config = BridgeConfig {
        routes_geojson: routes(),
        ..BridgeConfig::default()
    };
    (
        fleetmq_bridge::app(hub.clone(), port.clone(), config),
        hub,
        port,
    )
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).expect("utf-8 body"),
    )
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, text) = call(app, Request::get(uri).body(Body::empty()).expect("request")).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}")),
    )
}

fn ids(v: &Value) -> Vec<&str> {
    v["vehicles"]
        .as_array()
        .expect("vehicles")
        .iter()
        .map(|s| s["vehicle"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn vehicle_lookup_and_404_body() {
    let (app, hub, _) = setup();
    hub.push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, 5));
    let (status, v) = get(&app, "/api/v1/vehicles/bus-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["vehicle"].as_str(), v["ts"].as_i64(), v["route"].as_str()),
        (Some("bus-1"), Some(5), Some("R1"))
    );
    let (status, v) = get(&app, "/api/v1/vehicles/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{v}"
    );
    let (status, v) = get(&app, "/no/such/path").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

/// `/stops` lists the broker's stops only when they are of the state's route and trip (the
/// caller's rights were checked on the state): stops of another trip, as a tracker read from
/// another node's last write may still have, give way to the state's `next_stop`.
#[tokio::test]
async fn next_stops_only_of_the_states_own_trip() {
    let (app, hub, port) = setup();
    let stop = |id: &str, d: f64| geo_engine::NextStop {
        id: id.into(),
        name: id.into(),
        distance_m: d,
        eta: None,
        scheduled: None,
        delay_s: None,
    };
    let mut s = (*state("bus-1", -16.92, 145.77, Some("R1"), Some("T2"), 5)).clone();
    s.next_stop = Some(stop("next", 50.0));
    hub.push_state(Arc::new(s));
    let ids = |v: &Value| -> Vec<String> {
        v["stops"]
            .as_array()
            .expect("stops")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let upcoming = |trip: &str| fleetmq_bridge::UpcomingStops {
        route: Some("R1".into()),
        trip: Some(trip.into()),
        stops: vec![stop("a", 10.0), stop("b", 20.0), stop("c", 30.0)],
    };
    *port.upcoming.lock().expect("lock") = Some(upcoming("T2"));
    let (status, v) = get(&app, "/api/v1/vehicles/bus-1/stops?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ids(&v), v["trip"].as_str()),
        (vec!["a".into(), "b".into()], Some("T2"))
    );
    *port.upcoming.lock().expect("lock") = Some(upcoming("T1"));
    let (status, v) = get(&app, "/api/v1/vehicles/bus-1/stops").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), vec!["next".to_owned()], "{v}");
    *port.upcoming.lock().expect("lock") = None;
    let (_, v) = get(&app, "/api/v1/vehicles/bus-1/stops").await;
    assert_eq!(ids(&v), vec!["next".to_owned()], "{v}");
}

#[tokio::test]
async fn list_near_orders_by_distance_with_limit_and_radius() {
    let (app, hub, _) = setup();
    // Due north of the centre at 1, 3, 2, 50 km.
    let (lat0, lon0) = (-16.92, 145.77);
    for (id, km) in [("a", 1.0), ("c", 3.0), ("b", 2.0), ("far", 50.0)] {
        hub.push_state(state(id, lat0 + km / 111.2, lon0, Some("R1"), None, 1));
    }
    let (status, v) = get(&app, &format!("/api/v1/vehicles?near={lat0},{lon0}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), vec!["a", "b", "c", "far"]);
    let (_, v) = get(
        &app,
        &format!("/api/v1/vehicles?near={lat0},{lon0}&limit=2"),
    )
    .await;
    assert_eq!(ids(&v), vec!["a", "b"]);
    let (_, v) = get(
        &app,
        &format!("/api/v1/vehicles?near={lat0},{lon0}&radius_m=2500"),
    )
    .await;
    assert_eq!(ids(&v), vec!["a", "b"]);
    let (status, v) = get(&app, "/api/v1/vehicles?near=1000,2").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST"))
    );
    let (status, _) = get(&app, "/api/v1/vehicles?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn offline_vehicles_leave_near_and_bbox_results() {
    let (app, hub, _) = setup();
    hub.push_state(state("live", -16.92, 145.77, Some("R1"), None, 1));
    let mut gone = (*state("gone", -16.921, 145.77, Some("R1"), None, 1)).clone();
    gone.status = geo_engine::VehicleStatus::Offline;
    hub.push_state(Arc::new(gone));
    for query in [
        "/api/v1/vehicles?near=-16.92,145.77",
        "/api/v1/vehicles?bbox=145.7,-17.0,145.8,-16.8",
    ] {
        let (_, v) = get(&app, query).await;
        assert_eq!(ids(&v), vec!["live"], "{query}");
    }
    // Still listed (as offline) without an area, and by id.
    let (_, v) = get(&app, "/api/v1/vehicles").await;
    assert_eq!(ids(&v), vec!["gone", "live"]);
}

#[tokio::test]
async fn list_filters_by_bbox_and_route() {
    let (app, hub, _) = setup();
    hub.push_state(state("in-1", -16.92, 145.77, Some("R1"), None, 1));
    hub.push_state(state("in-2", -16.91, 145.76, Some("R2"), None, 1));
    hub.push_state(state("out", -17.5, 146.5, Some("R1"), None, 1));
    let (_, v) = get(&app, "/api/v1/vehicles?bbox=145.7,-17.0,145.8,-16.8").await;
    assert_eq!(ids(&v), vec!["in-1", "in-2"]);
    assert_eq!(v["count"], 2);
    let (_, v) = get(&app, "/api/v1/vehicles?route=R1").await;
    assert_eq!(ids(&v), vec!["in-1", "out"]);
    let (_, v) = get(
        &app,
        "/api/v1/vehicles?route=R1&bbox=145.7,-17.0,145.8,-16.8",
    )
    .await;
    assert_eq!(ids(&v), vec!["in-1"]);
    let (_, v) = get(&app, "/api/v1/vehicles?bbox=-180,-90,180,90&limit=1").await;
    assert_eq!(ids(&v), vec!["in-1"]);
    let (status, _) = get(&app, "/api/v1/vehicles?bbox=1,2,3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn track_from_ring_and_from_port() {
    let (app, hub, port) = setup();
    for ts in 1..=5 {
        hub.push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, ts * 1000));
    }
    let (status, v) = get(&app, "/api/v1/vehicles/bus-1/track?from=2000&to=4000").await;
    assert_eq!(status, StatusCode::OK);
    let ts: Vec<i64> = v["fixes"]
        .as_array()
        .expect("fixes")
        .iter()
        .filter_map(|f| f["ts"].as_i64())
        .collect();
    assert_eq!(ts, vec![2000, 3000, 4000]);
    let (status, _) = get(&app, "/api/v1/vehicles/ghost/track").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/api/v1/vehicles/bus-1/track?from=5&to=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&app, "/api/v1/vehicles/bus-1/track?from=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    *port.track.lock().expect("lock") = Some(vec![
        json!({"ts": 10}),
        json!({"ts": 20}),
        json!({"ts": 30}),
    ]);
    let (_, v) = get(&app, "/api/v1/vehicles/bus-1/track?from=15").await;
    assert_eq!(v["fixes"], json!([{"ts": 20}, {"ts": 30}]));
}

#[tokio::test]
async fn track_ring_is_bounded() {
    let hub = Hub::new(HubConfig {
        track_capacity: 3,
        ..HubConfig::default()
    });
    let app = fleetmq_bridge::app(
        hub.clone(),
        Arc::new(FakePort::default()),
        BridgeConfig::default(),
    );
    for ts in 1..=10 {
        hub.push_state(state("bus-1", -16.92, 145.77, None, None, ts));
    }
    let (_, v) = get(&app, "/api/v1/vehicles/bus-1/track").await;
    let ts: Vec<i64> = v["fixes"]
        .as_array()
        .expect("fixes")
        .iter()
        .filter_map(|f| f["ts"].as_i64())
        .collect();
    assert_eq!(ts, vec![8, 9, 10]);
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

#[tokio::test]
async fn ping_reaches_the_port() {
    let (app, _, port) = setup();
    let (status, text) = call(
        &app,
        post(
            "/api/v1/vehicles/bus-7/ping",
            r#"{"message":"please wait at Central"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let pings = port.pings.lock().expect("lock").clone();
    assert_eq!(pings.len(), 1);
    assert_eq!(pings[0].0, "bus-7");
    let payload: Value = serde_json::from_slice(&pings[0].1).expect("JSON payload");
    assert_eq!(payload["message"], "please wait at Central");
    assert!(payload["ts"].as_i64().is_some_and(|t| t > 0));

    for (body, what) in [
        ("{nope", "bad JSON"),
        (r#"{"msg":"x"}"#, "no message"),
        (r#"{"message":""}"#, "empty"),
    ] {
        let (status, text) = call(&app, post("/api/v1/vehicles/bus-7/ping", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        let v: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(v["error"]["code"], "BAD_REQUEST", "{what}");
    }
    let (status, text) = call(
        &app,
        post("/api/v1/vehicles/a+b/ping", r#"{"message":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(100_000));
    let (status, text) = call(&app, post("/api/v1/vehicles/bus-7/ping", &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    let v: Value = serde_json::from_str(&text).expect("a JSON error body for 413 too");
    assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(
        port.pings.lock().expect("lock").len(),
        1,
        "rejected pings must not reach the broker"
    );
}

#[tokio::test]
async fn routes_endpoints() {
    let (app, _, _) = setup();
    let (status, v) = get(&app, "/api/v1/routes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["type"], "FeatureCollection");
    assert_eq!(v["features"].as_array().map(Vec::len), Some(3));
    let (status, v) = get(&app, "/api/v1/routes/R2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["features"].as_array().map(Vec::len),
        Some(2),
        "the R2 line and the shared stop"
    );
    let (status, v) = get(&app, "/api/v1/routes/R9").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (app, hub, port) = setup();
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&app, "/readyz").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    *port.readiness.lock().expect("lock") = Some(Readiness::Degraded("redis down".into()));
    let (status, v) = get(&app, "/readyz").await;
    assert_eq!(
        (status, v["status"].as_str(), v["reason"].as_str()),
        (StatusCode::OK, Some("degraded"), Some("redis down"))
    );
    *port.readiness.lock().expect("lock") = Some(Readiness::NotReady("restoring".into()));
    assert_eq!(
        get(&app, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    hub.push_state(state("bus-1", -16.92, 145.77, None, None, 1));
    let (status, text) = call(
        &app,
        Request::get("/metrics")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("fleetmq_fake_connections 7"),
        "broker metrics first:\n{text}"
    );
    for name in [
        "fleetmq_bridge_ws_clients 0",
        "fleetmq_bridge_sse_clients 0",
        "fleetmq_bridge_deliveries_coalesced_total 0",
        "fleetmq_bridge_deliveries_dropped_total 0",
        "fleetmq_bridge_slow_clients_closed_total 0",
        "fleetmq_bridge_vehicles 1",
        "fleetmq_bridge_states_pushed_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == name),
            "missing {name:?} in\n{text}"
        );
    }
}

/// Reads SSE frames until one whole event (`event:`/`data:` block) is there.
async fn next_sse(body: &mut Body, buf: &mut String) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            return (kind, serde_json::from_str(&data).expect("SSE data is JSON"));
        }
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("SSE timed out");
        let frame = frame.expect("SSE ended").expect("SSE body error");
        if let Ok(data) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&data).expect("utf-8"));
        }
    }
}

#[tokio::test]
async fn sse_stream_sends_snapshot_updates_and_events() {
    let (app, hub, _) = setup();
    hub.push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, 1));
    hub.push_state(state("bus-2", -17.5, 146.5, Some("R2"), None, 1));
    let res = app
        .clone()
        .oneshot(
            Request::get("/api/v1/stream?route=R1&max_hz=10")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream"))
    );
    let mut body = res.into_body();
    let mut buf = String::new();
    let (kind, snap) = next_sse(&mut body, &mut buf).await;
    assert_eq!(
        (kind.as_str(), snap["type"].as_str()),
        ("snapshot", Some("snapshot"))
    );
    assert_eq!(snapshot_ids(&snap), vec!["bus-1"]);
    assert_eq!(
        hub.metrics()
            .sse_clients
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    hub.push_state(state("bus-2", -17.5, 146.51, Some("R2"), None, 2));
    hub.push_state(state("bus-1", -16.92, 145.78, Some("R1"), None, 3));
    let (kind, up) = next_sse(&mut body, &mut buf).await;
    assert_eq!(kind, "update");
    assert_eq!(
        (
            up["vehicle"]["vehicle"].as_str(),
            up["vehicle"]["ts"].as_i64()
        ),
        (Some("bus-1"), Some(3))
    );

    hub.push_event(event(
        "bus-1",
        geo_engine::EventKind::Offline,
        -16.92,
        145.78,
        None,
        4,
    ));
    let (kind, ev) = next_sse(&mut body, &mut buf).await;
    assert_eq!(
        (kind.as_str(), ev["event"]["kind"].as_str()),
        ("event", Some("offline"))
    );

    drop(body);
    wait_until(5, "the SSE client to be dropped", || {
        hub.metrics()
            .sse_clients
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    })
    .await;

    let (status, v) = get(&app, "/api/v1/stream?bbox=nonsense").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn mqtt_over_websocket_round_trip_through_the_port() {
    let s = start(HubConfig::default()).await;
    let mut req = format!("ws://{}/mqtt", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().expect("header"));
    let (mut ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect /mqtt");
    assert_eq!(res.headers()["sec-websocket-protocol"], "mqtt");
    // A CONNECT-shaped packet and a second message: the fake broker echoes the byte stream.
    let sent: Vec<u8> = [
        &[0x10u8, 0x03, 0x00, 0x04, 0x4d][..],
        &vec![0xAB; 40_000][..],
    ]
    .concat();
    ws.send(Message::Binary(sent[..5].to_vec().into()))
        .await
        .expect("send");
    ws.send(Message::Binary(sent[5..].to_vec().into()))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo")
            .expect("open")
            .expect("ok");
        match msg {
            Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, sent);

    // Without the subprotocol the upgrade is refused.
    let err = tokio_tungstenite::connect_async(format!("ws://{}/mqtt", s.addr))
        .await
        .expect_err("must refuse");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => {
            assert_eq!(res.status(), StatusCode::BAD_REQUEST)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_request_over_the_timeout_gets_408_json() {
    let hub = Hub::new(HubConfig::default());
    let port = Arc::new(FakePort::default());
    port.track_hangs
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let config = BridgeConfig {
        request_timeout: Duration::from_millis(100),
        ..BridgeConfig::default()
    };
    let app = fleetmq_bridge::app(hub.clone(), port, config);
    hub.push_state(state("bus-1", -16.92, 145.77, None, None, 1));
    let (status, v) = get(&app, "/api/v1/vehicles/bus-1/track").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::REQUEST_TIMEOUT, Some("TIMEOUT"))
    );
}

#[tokio::test]
async fn map_page_and_its_config() {
    let (app, _, _) = setup();
    let (status, html) = call(
        &app,
        Request::get("/").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<canvas") && html.contains("/map.js"),
        "{html}"
    );
    let (status, js) = call(
        &app,
        Request::get("/map.js")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        js.contains("__fleetmq") && !js.contains("http://") && !js.contains("https://"),
        "no third-party script"
    );
    assert_eq!(
        get(&app, "/map/config.json").await,
        (
            StatusCode::OK,
            json!({"tile_url": null, "attribution": null, "attribution_url": null})
        )
    );
    let config = BridgeConfig {
        tile_url: Some("https://tiles.example/{z}/{x}/{y}.png".into()),
        ..BridgeConfig::default()
    };
    let app = fleetmq_bridge::app(
        Hub::new(HubConfig::default()),
        Arc::new(FakePort::default()),
        config,
    );
    let (_, v) = get(&app, "/map/config.json").await;
    assert_eq!(v["tile_url"], "https://tiles.example/{z}/{x}/{y}.png");
    assert_eq!(v["attribution"], "© OpenStreetMap contributors");
    let (status, js) = call(
        &app,
        Request::get("/playback.js")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("/history?") && !js.contains("http://") && !js.contains("https://"));
}
