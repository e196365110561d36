//! Bearer tokens on HTTP and WebSocket (docs/http-api.md#authentication): the broker's
//! `authenticate` decides, the bridge refuses with 401 and filters every list, state, snapshot,
//! update and event by the access.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use fleetmq_bridge::{BridgeConfig, Hub, HubConfig};
use geo_engine::EventKind;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

fn setup() -> (Router, Hub, Arc<FakePort>) {
    let hub = Hub::new(HubConfig::default());
    let port = Arc::new(FakePort::default());
    port.auth.store(true, Ordering::Relaxed);
    let app = fleetmq_bridge::app(hub.clone(), port.clone(), BridgeConfig::default());
    hub.push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, 1));
    hub.push_state(state("bus-2", -16.921, 145.771, Some("R2"), None, 1));
    (app, hub, port)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(uri: &str, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::get(uri);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(Body::empty()).expect("request")
}

fn ids(v: &Value) -> Vec<&str> {
    v["vehicles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["vehicle"].as_str())
        .collect()
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401() {
    let (app, _, _) = setup();
    let (status, v) = call(&app, get("/api/v1/vehicles", None)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED"))
    );
    let (status, _) = call(&app, get("/api/v1/vehicles", Some("forged"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let req = Request::get("/api/v1/vehicles")
        .header("authorization", "Basic abc")
        .body(Body::empty())
        .expect("req");
    assert_eq!(call(&app, req).await.0, StatusCode::UNAUTHORIZED);
    // Public endpoints stay open.
    assert_eq!(call(&app, get("/healthz", None)).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, get("/api/v1/routes", None)).await.0,
        StatusCode::OK
    );
    // Header and query token both work.
    assert_eq!(
        call(&app, get("/api/v1/vehicles", Some("operator")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, get("/api/v1/vehicles?token=operator", None))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_rider_sees_only_its_route() {
    let (app, _, port) = setup();
    let (_, v) = call(&app, get("/api/v1/vehicles", Some("operator"))).await;
    assert_eq!(ids(&v), vec!["bus-1", "bus-2"]);
    let (_, v) = call(
        &app,
        get("/api/v1/vehicles?near=-16.92,145.77", Some("rider-R2")),
    )
    .await;
    assert_eq!(ids(&v), vec!["bus-2"]);
    let (_, v) = call(&app, get("/api/v1/vehicles?limit=1&token=rider-R2", None)).await;
    assert_eq!(
        ids(&v),
        vec!["bus-2"],
        "the limit applies after the access filter"
    );
    assert_eq!(
        call(&app, get("/api/v1/vehicles/bus-1", Some("rider-R2")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, get("/api/v1/vehicles/bus-2", Some("rider-R2")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, get("/api/v1/vehicles/bus-1/track", Some("rider-R2")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let ping = Request::post("/api/v1/vehicles/bus-2/ping")
        .header("authorization", "Bearer rider-R2")
        .body(Body::from(r#"{"message":"hi"}"#))
        .expect("req");
    let (status, v) = call(&app, ping).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN"))
    );
    assert!(port.pings.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn websocket_needs_a_token_and_filters_by_it() {
    let s = start(HubConfig::default()).await;
    s.port.auth.store(true, Ordering::Relaxed);
    s.hub
        .push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, 1));
    s.hub
        .push_state(state("bus-2", -16.921, 145.771, Some("R2"), None, 1));

    match tokio_tungstenite::connect_async(format!("ws://{}/ws", s.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let mut req = format!("ws://{}/ws", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("authorization", "Bearer rider-R2".parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect with token");
    send(&mut ws, json!({"op": "subscribe", "id": "all", "bbox": [-180, -90, 180, 90], "events": true, "max_hz": 10})).await;
    assert_eq!(snapshot_ids(&recv(&mut ws, 5).await), vec!["bus-2"]);
    s.hub
        .push_state(state("bus-1", -16.92, 145.772, Some("R1"), None, 2));
    s.hub.push_event(event(
        "bus-1",
        EventKind::Deviation,
        -16.92,
        145.772,
        None,
        2,
    ));
    s.hub
        .push_state(state("bus-2", -16.921, 145.772, Some("R2"), None, 3));
    let up = recv(&mut ws, 5).await;
    assert_eq!(
        (up["type"].as_str(), up["vehicle"]["vehicle"].as_str()),
        (Some("update"), Some("bus-2")),
        "{up}"
    );
    // Query-string tokens work for browsers, which cannot set headers on a WebSocket.
    let (mut op, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token=operator", s.addr))
            .await
            .expect("connect");
    send(
        &mut op,
        json!({"op": "subscribe", "id": "all", "bbox": [-180, -90, 180, 90]}),
    )
    .await;
    assert_eq!(
        snapshot_ids(&recv(&mut op, 5).await),
        vec!["bus-1", "bus-2"]
    );
}

/// The GTFS-Realtime feeds describe the whole fleet: a rider's token is refused, an operator's
/// reaches the broker (which here serves no feed: 404), no token is 401.
#[tokio::test]
async fn gtfs_rt_feeds_need_whole_fleet_access() {
    let (app, _, _) = setup();
    let (status, _) = call(&app, get("/gtfs-rt/trip-updates", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = call(&app, get("/gtfs-rt/trip-updates", Some("rider-R1"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN"))
    );
    let (status, v) = call(&app, get("/gtfs-rt/trip-updates", Some("operator"))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, _) = call(&app, get("/gtfs-rt/alerts?format=xml", Some("operator"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
