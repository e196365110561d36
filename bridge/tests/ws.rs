//! `/ws` protocol: snapshot then updates for every subscription kind, filters, error replies,
//! unsubscribe, and coalescing.

mod common;

use std::time::Duration;

use common::*;
use fleetmq_bridge::HubConfig;
use geo_engine::EventKind;
use serde_json::{Value, json};

const CAIRNS: (f64, f64) = (-16.92, 145.77);
const FAR: (f64, f64) = (-17.5, 146.5);

/// Pushes bus-1 (R1/T1 in Cairns) and bus-2 (R2/T2 far away).
fn seed(s: &Server, ts: i64) {
    s.hub.push_state(state(
        "bus-1",
        CAIRNS.0,
        CAIRNS.1,
        Some("R1"),
        Some("T1"),
        ts,
    ));
    s.hub
        .push_state(state("bus-2", FAR.0, FAR.1, Some("R2"), Some("T2"), ts));
}

/// Subscribes with `filter`, expects a snapshot of just bus-1, then updates of bus-1 and never of
/// bus-2 (pushed between two bus-1 updates, so it would arrive before the second).
async fn check_kind(filter: Value) {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    let mut req = filter.clone();
    req["op"] = json!("subscribe");
    req["id"] = json!("s1");
    req["max_hz"] = json!(10);
    send(&mut ws, req).await;
    let snap = recv(&mut ws, 5).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(snap["sub"], "s1");
    assert_eq!(snapshot_ids(&snap), vec!["bus-1"], "filter {filter}");

    s.hub.push_state(state(
        "bus-1",
        CAIRNS.0 + 0.001,
        CAIRNS.1,
        Some("R1"),
        Some("T1"),
        2000,
    ));
    let up = recv(&mut ws, 5).await;
    assert_eq!(up["type"], "update", "{up}");
    assert_eq!(up["sub"], "s1");
    assert_eq!(up["vehicle"]["vehicle"], "bus-1");
    assert_eq!(up["vehicle"]["ts"], 2000);

    s.hub.push_state(state(
        "bus-2",
        FAR.0 + 0.001,
        FAR.1,
        Some("R2"),
        Some("T2"),
        3000,
    ));
    s.hub.push_state(state(
        "bus-1",
        CAIRNS.0 + 0.002,
        CAIRNS.1,
        Some("R1"),
        Some("T1"),
        4000,
    ));
    let up = recv(&mut ws, 5).await;
    assert_eq!(
        up["vehicle"]["vehicle"], "bus-1",
        "filter {filter} let through {up}"
    );
    assert_eq!(up["vehicle"]["ts"], 4000);
}

#[tokio::test]
async fn vehicle_subscription() {
    check_kind(json!({"vehicle": "bus-1"})).await;
}

#[tokio::test]
async fn route_subscription() {
    check_kind(json!({"route": "R1"})).await;
}

#[tokio::test]
async fn trip_subscription() {
    check_kind(json!({"trip": "T1"})).await;
}

#[tokio::test]
async fn bbox_subscription() {
    check_kind(json!({"bbox": [145.7, -17.0, 145.8, -16.8]})).await;
}

#[tokio::test]
async fn wide_bbox_subscription_sees_everything() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "w", "bbox": [-180, -90, 180, 90]}),
    )
    .await;
    assert_eq!(
        snapshot_ids(&recv(&mut ws, 5).await),
        vec!["bus-1", "bus-2"]
    );
    s.hub
        .push_state(state("bus-2", FAR.0, FAR.1 + 0.01, Some("R2"), None, 2000));
    assert_eq!(recv(&mut ws, 5).await["vehicle"]["vehicle"], "bus-2");
}

#[tokio::test]
async fn vehicle_leaving_bbox_gets_one_last_update() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "b", "bbox": [145.7, -17.0, 145.8, -16.8], "max_hz": 10}),
    )
    .await;
    assert_eq!(snapshot_ids(&recv(&mut ws, 5).await), vec!["bus-1"]);
    // bus-1 drives out of the box: the client hears it once, then no more.
    s.hub
        .push_state(state("bus-1", FAR.0, FAR.1, Some("R1"), Some("T1"), 2000));
    let up = recv(&mut ws, 5).await;
    assert_eq!(
        (
            up["vehicle"]["vehicle"].as_str(),
            up["vehicle"]["ts"].as_i64()
        ),
        (Some("bus-1"), Some(2000))
    );
    s.hub.push_state(state(
        "bus-1",
        FAR.0,
        FAR.1 + 0.01,
        Some("R1"),
        Some("T1"),
        3000,
    ));
    s.hub
        .push_state(state("bus-3", CAIRNS.0, CAIRNS.1, None, None, 3000));
    let up = recv(&mut ws, 5).await;
    assert_eq!(up["vehicle"]["vehicle"], "bus-3", "{up}");
}

#[tokio::test]
async fn events_subscription_filters_by_route() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ev", "events": true}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    assert_eq!(snap["type"], "snapshot");
    assert!(
        snapshot_ids(&snap).is_empty(),
        "an events-only subscription has no vehicles"
    );
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "r1", "route": "R1", "events": true}),
    )
    .await;
    assert_eq!(snapshot_ids(&recv(&mut ws, 5).await), vec!["bus-1"]);

    // The event carries no route: the bridge uses the vehicle's latest state (R2 for bus-2).
    s.hub.push_event(event(
        "bus-2",
        EventKind::Deviation,
        FAR.0,
        FAR.1,
        None,
        2000,
    ));
    let ev = recv(&mut ws, 5).await;
    assert_eq!(
        (ev["type"].as_str(), ev["sub"].as_str()),
        (Some("event"), Some("ev")),
        "{ev}"
    );
    assert_eq!(ev["event"]["kind"], "deviation");
    assert_eq!(ev["event"]["vehicle"], "bus-2");

    s.hub.push_event(event(
        "bus-1",
        EventKind::StopArrival,
        CAIRNS.0,
        CAIRNS.1,
        Some("R1"),
        3000,
    ));
    let mut subs: Vec<String> = Vec::new();
    for _ in 0..2 {
        let ev = recv(&mut ws, 5).await;
        assert_eq!(ev["type"], "event");
        assert_eq!(ev["event"]["vehicle"], "bus-1");
        assert_eq!(ev["event"]["kind"], "stop_arrival");
        subs.push(ev["sub"].as_str().unwrap_or_default().to_owned());
    }
    subs.sort();
    assert_eq!(subs, vec!["ev", "r1"]);
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_connection_stays_open() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    ws_send_text(&mut ws, "this is not json").await;
    let e = recv(&mut ws, 5).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("BAD_JSON")),
        "{e}"
    );
    send(&mut ws, json!({"op": "dance", "id": "x"})).await;
    assert_eq!(recv(&mut ws, 5).await["code"], "UNKNOWN_OP");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "x", "bbox": [1, 2, 3]}),
    )
    .await;
    assert_eq!(recv(&mut ws, 5).await["code"], "BAD_BBOX");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "x", "bbox": [10, 0, 5, 1]}),
    )
    .await;
    assert_eq!(recv(&mut ws, 5).await["code"], "BAD_BBOX");
    send(&mut ws, json!({"op": "unsubscribe", "id": "never"})).await;
    assert_eq!(recv(&mut ws, 5).await["code"], "NOT_SUBSCRIBED");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ok", "vehicle": "bus-1"}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snapshot_ids(&snap), vec!["bus-1"]);
}

#[tokio::test]
async fn unsubscribe_stops_updates() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "a", "vehicle": "bus-1", "max_hz": 10}),
    )
    .await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "b", "vehicle": "bus-2", "max_hz": 10}),
    )
    .await;
    recv(&mut ws, 5).await;
    recv(&mut ws, 5).await;
    send(&mut ws, json!({"op": "unsubscribe", "id": "a"})).await;
    // The unsubscribe is applied before the next request is read: an error reply proves it was.
    send(&mut ws, json!({"op": "unsubscribe", "id": "a"})).await;
    assert_eq!(recv(&mut ws, 5).await["code"], "NOT_SUBSCRIBED");
    s.hub
        .push_state(state("bus-1", CAIRNS.0, CAIRNS.1, Some("R1"), None, 2000));
    s.hub
        .push_state(state("bus-2", FAR.0, FAR.1, Some("R2"), None, 2000));
    let up = recv(&mut ws, 5).await;
    assert_eq!(
        (up["sub"].as_str(), up["vehicle"]["vehicle"].as_str()),
        (Some("b"), Some("bus-2")),
        "{up}"
    );
}

#[tokio::test]
async fn updates_are_coalesced_at_max_hz() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "c", "vehicle": "bus-1", "max_hz": 1}),
    )
    .await;
    recv(&mut ws, 5).await;
    s.hub
        .push_state(state("bus-1", CAIRNS.0, CAIRNS.1, Some("R1"), None, 2000));
    assert_eq!(recv(&mut ws, 5).await["vehicle"]["ts"], 2000);
    // Within the next second: many states; the client gets only the latest, once.
    let before = s
        .hub
        .metrics()
        .deliveries_coalesced
        .load(std::sync::atomic::Ordering::Relaxed);
    for ts in 3000..3050 {
        s.hub
            .push_state(state("bus-1", CAIRNS.0, CAIRNS.1, Some("R1"), None, ts));
    }
    let up = recv(&mut ws, 5).await;
    assert_eq!(up["vehicle"]["ts"], 3049, "{up}");
    let after = s
        .hub
        .metrics()
        .deliveries_coalesced
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(after - before >= 49, "coalesced {}", after - before);
}

async fn ws_send_text(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
        .await
        .expect("send");
}

#[tokio::test]
async fn server_pings_and_a_ponging_client_stays_connected() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let config = fleetmq_bridge::BridgeConfig {
        ws_ping_interval: std::time::Duration::from_millis(100),
        ws_idle_timeout: std::time::Duration::from_millis(350),
        ..fleetmq_bridge::BridgeConfig::default()
    };
    let s = start_with(HubConfig::default(), config).await;
    let mut ws = connect(s.addr).await;
    // Reading makes tungstenite answer each ping; 8 pings span longer than the idle timeout.
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while pings < 8 {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("pings")
            .expect("open")
            .expect("ok");
        match msg {
            Message::Ping(_) => pings += 1,
            Message::Close(f) => panic!("closed although ponging: {f:?}"),
            _ => {}
        }
    }
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "s", "vehicle": "x"}),
    )
    .await;
    loop {
        if recv(&mut ws, 5).await["type"] == "snapshot" {
            break;
        }
    }
}

/// Reads until the server's close frame and returns its code.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no close frame")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn server_shutdown_closes_clients_with_1001() {
    let s = start(HubConfig::default()).await;
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "s", "vehicle": "x"}),
    )
    .await;
    assert_eq!(recv(&mut ws, 5).await["type"], "snapshot");
    let hub = s.hub.clone();
    drop(s); // resolves the shutdown future given to `serve`
    assert_eq!(close_code(&mut ws).await, Some(1001));
    wait_until(5, "the client to be gone", || {
        hub.metrics()
            .ws_clients
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    })
    .await;
}

/// Once shutdown starts, the port is closed at once (a new client is refused, not left waiting
/// unserved in the accept queue); a request in progress gets the 5 s grace period, then its
/// connection is cut (not left to run on after `serve` returned).
#[tokio::test]
async fn server_shutdown_stops_accepting_then_cuts_after_the_grace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start(HubConfig::default()).await;
    let addr = s.addr;
    // A request whose body is still coming: the server answers `100 Continue` once the
    // handler reads it, so it is in progress (not idle) when shutdown starts.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /api/v1/vehicles/bus-1/location HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 64\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("send head");
    let mut reply = Vec::new();
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.starts_with(b"HTTP/1.1 100"), "{reply:?}");
    drop(s);
    let stopped = tokio::time::Instant::now();
    // Well within the 5 s grace that the slow request keeps the server in. A port still
    // listening accepts (or, its queue full, leaves the connect hanging): both fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout_at(deadline, connect).await {
            Ok(Err(_)) => break,
            Ok(Ok(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => panic!("still accepting connections after shutdown started"),
        }
    }
    // Cut after the grace period: closed without an answer (the app's 10 s request timeout
    // would answer 408 later).
    let mut rest = Vec::new();
    let read = tokio::time::timeout_at(
        stopped + Duration::from_secs(8),
        slow.read_to_end(&mut rest),
    );
    let read = read
        .await
        .expect("the slow request still open 8 s after shutdown");
    assert!(
        read.is_err() || rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn hub_close_all_closes_clients_with_1001() {
    let s = start(HubConfig::default()).await;
    let mut a = connect(s.addr).await;
    let mut b = connect(s.addr).await;
    for ws in [&mut a, &mut b] {
        send(ws, json!({"op": "subscribe", "id": "s", "events": true})).await;
        assert_eq!(recv(ws, 5).await["type"], "snapshot");
    }
    s.hub.close_all();
    assert_eq!(close_code(&mut a).await, Some(1001));
    assert_eq!(close_code(&mut b).await, Some(1001));
}

#[tokio::test]
async fn request_floods_are_rate_limited_and_the_connection_stays_open() {
    let s = start(HubConfig::default()).await;
    let mut ws = connect(s.addr).await;
    for i in 0..40 {
        send(&mut ws, json!({"op": "unsubscribe", "id": format!("n{i}")})).await;
    }
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(
            recv(&mut ws, 5).await["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let limited = codes.iter().filter(|c| *c == "RATE_LIMITED").count();
    assert!(limited >= 10, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "NOT_SUBSCRIBED").count() + limited,
        40
    );
}

/// docs/http-api.md: an `"events":true` subscriber first gets the last events (at most 50, oldest
/// first) in its snapshot, filtered like live events; a states-only subscription gets none.
#[tokio::test]
async fn snapshot_carries_the_last_50_events() {
    let s = start(HubConfig::default()).await;
    seed(&s, 1000);
    for i in 0..60 {
        let vehicle = if i % 2 == 0 { "bus-1" } else { "bus-2" };
        s.hub.push_event(event(
            vehicle,
            EventKind::StopArrival,
            CAIRNS.0,
            CAIRNS.1,
            None,
            10_000 + i,
        ));
    }
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ev", "events": true}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    let ts: Vec<i64> = snap["events"]
        .as_array()
        .expect("events in the snapshot")
        .iter()
        .filter_map(|e| e["ts"].as_i64())
        .collect();
    assert_eq!(ts, (10_010..10_060).collect::<Vec<i64>>(), "{snap}");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "one", "vehicle": "bus-2", "events": true}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    let events = snap["events"].as_array().expect("events");
    assert_eq!(events.len(), 30, "{snap}");
    assert!(events.iter().all(|e| e["vehicle"] == "bus-2"));
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "st", "vehicle": "bus-2"}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    assert!(snap.get("events").is_none(), "{snap}");
}
