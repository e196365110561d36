//! `/ws` at scale: `"batch":true` subscriptions get one `updates` frame per tick holding every
//! changed vehicle while plain ones keep one `update` per vehicle, and a watcher that stops
//! reading holds a bounded queue without holding back the others.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fleetmq_bridge::HubConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const CAIRNS: (f64, f64) = (-16.92, 145.77);
const BOX: [f64; 4] = [145.6, -17.1, 145.9, -16.7];

fn bus(i: usize) -> String {
    format!("bus-{i:04}")
}

/// Pushes a state for each of `vehicles` at `ts`, spread a little around Cairns.
fn push_round(s: &Server, vehicles: std::ops::Range<usize>, ts: i64) {
    for i in vehicles {
        let d = (i % 100) as f64 * 0.001;
        s.hub.push_state(state(
            &bus(i),
            CAIRNS.0 + d,
            CAIRNS.1 + d,
            Some("R1"),
            None,
            ts,
        ));
    }
}

/// `(vehicle, ts)` of the states in an `updates` or `snapshot` frame, sorted.
fn states_of(frame: &Value) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = frame["vehicles"]
        .as_array()
        .expect("vehicles array")
        .iter()
        .map(|s| {
            (
                s["vehicle"].as_str().expect("id").to_owned(),
                s["ts"].as_i64().expect("ts"),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn batched_subscription_gets_one_frame_per_tick_with_every_changed_vehicle() {
    let s = start(HubConfig::default()).await;
    push_round(&s, 0..20, 1000);
    let mut ws = connect(s.addr).await;
    // A 2 s tick leaves ample time to push both rounds inside one tick on a loaded machine; the
    // gaps below are checked against half of it, since the tick starts when the server queues
    // the snapshot, a little before the test reads it.
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "map", "bbox": BOX, "max_hz": 0.5, "batch": true}),
    )
    .await;
    let snap = recv(&mut ws, 5).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(states_of(&snap).len(), 20);
    let snap_at = Instant::now();

    // Two rounds of half the fleet within the tick: one frame, each vehicle once, latest state.
    push_round(&s, 0..10, 2000);
    push_round(&s, 0..10, 3000);
    let first = recv(&mut ws, 10).await;
    let first_at = Instant::now();
    assert_eq!(first["type"], "updates", "{first}");
    assert_eq!(first["sub"], "map");
    let want: Vec<(String, i64)> = (0..10).map(|i| (bus(i), 3000)).collect();
    assert_eq!(states_of(&first), want);
    assert!(
        first_at - snap_at >= Duration::from_millis(1000),
        "the first frame came {:?} after the snapshot, before the 2 s tick",
        first_at - snap_at
    );

    // The other half changes next: the next frame holds just those, one tick later.
    push_round(&s, 10..20, 4000);
    let second = recv(&mut ws, 10).await;
    assert_eq!(second["type"], "updates", "{second}");
    let want: Vec<(String, i64)> = (10..20).map(|i| (bus(i), 4000)).collect();
    assert_eq!(states_of(&second), want);
    assert!(
        Instant::now() - first_at >= Duration::from_millis(1000),
        "two frames within one tick"
    );
}

#[tokio::test]
async fn plain_subscription_still_gets_one_update_per_vehicle() {
    let s = start(HubConfig::default()).await;
    push_round(&s, 0..5, 1000);
    let mut ws = connect(s.addr).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "p", "bbox": BOX, "max_hz": 10}),
    )
    .await;
    assert_eq!(recv(&mut ws, 5).await["type"], "snapshot");
    push_round(&s, 0..5, 2000);
    let mut seen = HashSet::new();
    while seen.len() < 5 {
        let m = recv(&mut ws, 5).await;
        assert_eq!(m["type"], "update", "{m}");
        assert!(m.get("vehicles").is_none(), "{m}");
        seen.insert(m["vehicle"]["vehicle"].as_str().expect("id").to_owned());
    }
}

#[tokio::test]
async fn a_watcher_that_stops_reading_holds_a_bounded_queue_and_slows_no_one() {
    const VEHICLES: usize = 1000;
    let s = start(HubConfig::default()).await;
    push_round(&s, 0..VEHICLES, 1);

    // The stuck watchers, one plain and one batched: a tiny receive buffer, subscribed to
    // everything, never reading again.
    let sub = json!({"op": "subscribe", "id": "all", "bbox": BOX, "max_hz": 10});
    let mut batched = sub.clone();
    batched["batch"] = json!(true);
    let mut stuck = Vec::new();
    for request in [&sub, &batched] {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(4096).expect("rcvbuf");
        let tcp = sock.connect(s.addr).await.expect("connect");
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", s.addr), tcp)
            .await
            .expect("handshake");
        ws.send(Message::Text(request.to_string().into()))
            .await
            .expect("send");
        stuck.push(ws);
    }

    // The healthy watcher records the latest ts it saw per vehicle.
    let mut healthy = connect(s.addr).await;
    send(&mut healthy, sub.clone()).await;
    assert_eq!(recv(&mut healthy, 5).await["type"], "snapshot");
    let latest: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let seen = latest.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(Message::Text(t))) = healthy.next().await {
            let m: Value = serde_json::from_str(t.as_str()).expect("json");
            if m["type"] == "update" {
                let v = &m["vehicle"];
                let id = v["vehicle"].as_str().expect("id").to_owned();
                let ts = v["ts"].as_i64().expect("ts");
                seen.lock().expect("lock").insert(id, ts);
            }
        }
    });

    // Push for a few seconds: far more than both socket buffers of the stuck watcher hold.
    let until = Instant::now() + Duration::from_secs(3);
    let mut ts = 1;
    let mut largest = 0;
    while Instant::now() < until {
        ts += 1;
        push_round(&s, 0..VEHICLES, ts);
        largest = largest.max(s.hub.largest_queue());
        tokio::task::yield_now().await;
    }
    let last = ts;
    wait_until(10, "the healthy watcher to get every latest state", || {
        let l = latest.lock().expect("lock");
        l.len() == VEHICLES && l.values().all(|t| *t == last)
    })
    .await;
    // At most one state per vehicle, plus the snapshot and control messages.
    let bound = VEHICLES + HubConfig::default().client_control_queue;
    assert!(
        largest <= bound,
        "a queue reached {largest} (bound {bound})"
    );
    // The stuck watchers really are stuck: a queue still holds states the healthy one has had.
    assert!(
        s.hub.largest_queue() > 0,
        "the stuck watchers drained everything: their socket buffers were too big for this test"
    );
    reader.abort();
    drop(stuck);
}
