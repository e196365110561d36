//! Delivery under load: a client that never reads is closed with 1013 while another client's
//! updates keep arriving promptly, and 1,000 concurrent clients all receive an update.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use fleetmq_bridge::HubConfig;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_with_1013_and_others_are_not_delayed() {
    let config = HubConfig {
        slow_client_timeout: Duration::from_secs(3),
        ..HubConfig::default()
    };
    let s = start(config).await;
    // A long trip name makes each state large, so the slow client's socket buffers fill quickly.
    let trip = "T".repeat(4000);
    let mut slow = connect(s.addr).await;
    send(
        &mut slow,
        json!({"op": "subscribe", "id": "all", "bbox": [145.0, -17.5, 146.0, -16.5], "max_hz": 10}),
    )
    .await;
    let mut fast = connect(s.addr).await;
    send(
        &mut fast,
        json!({"op": "subscribe", "id": "probe", "vehicle": "probe", "max_hz": 10}),
    )
    .await;
    assert_eq!(recv(&mut fast, 5).await["type"], "snapshot");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round: i64 = 0;
    let mut worst = Duration::ZERO;
    while s.hub.metrics().slow_clients_closed.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow client was never closed"
        );
        round += 1;
        for v in 0..500 {
            let lat = -17.0 + (v as f64) * 0.0005 + (round as f64) * 1e-5;
            s.hub.push_state(state(
                &format!("bus-{v}"),
                lat,
                145.5,
                Some("R1"),
                Some(&trip),
                round,
            ));
        }
        let sent = Instant::now();
        s.hub
            .push_state(state("probe", -17.0, 145.5, None, None, round));
        // The probe's update arrives promptly however far behind the slow client is.
        loop {
            let up = recv(&mut fast, 5).await;
            if up["vehicle"]["ts"] == round {
                break;
            }
        }
        worst = worst.max(sent.elapsed());
        // Paces the feed at about 10 rounds a second (a rate, not a wait for a condition).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slow client closed after {round} rounds; worst probe latency {worst:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "fast client delayed by {worst:?}"
    );

    // Now the slow client reads: what was buffered, then the close frame with 1013.
    let close_deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let msg = tokio::time::timeout_at(close_deadline, slow.next())
            .await
            .expect("no close frame");
        match msg {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("stream ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Again), "expected close code 1013");
    // The fast client is still served.
    s.hub
        .push_state(state("probe", -17.0, 145.5, None, None, -1));
    loop {
        if recv(&mut fast, 5).await["vehicle"]["ts"] == -1 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_receive_an_update() {
    const N: usize = 1000;
    // Client and server ends live in this process: two descriptors per connection.
    let limit = rlimit::increase_nofile_limit(4 * N as u64 + 256).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= 2 * N as u64 + 64,
        "RLIMIT_NOFILE hard limit {limit} is too low for {N} clients"
    );
    let s = start(HubConfig::default()).await;
    s.hub
        .push_state(state("bus-1", -16.92, 145.77, Some("R1"), None, 1));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(N);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<i64>(N);
    let addr = s.addr;
    let mut tasks = Vec::new();
    for i in 0..N {
        let ready_tx = ready_tx.clone();
        let done_tx = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(addr).await;
            let kind = if i % 2 == 0 {
                json!({"route": "R1"})
            } else {
                json!({"bbox": [145.7, -17.0, 145.8, -16.8]})
            };
            let mut req = kind;
            req["op"] = json!("subscribe");
            req["id"] = json!(format!("c{i}"));
            send(&mut ws, req).await;
            let snap = recv(&mut ws, 60).await;
            assert_eq!(snapshot_ids(&snap), vec!["bus-1"]);
            ready_tx.send(()).await.expect("ready");
            let up = recv(&mut ws, 60).await;
            done_tx
                .send(up["vehicle"]["ts"].as_i64().unwrap_or(0))
                .await
                .expect("done");
        }));
    }
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(120), ready_rx.recv())
            .await
            .expect("clients connecting")
            .expect("ready");
    }
    assert_eq!(s.hub.metrics().ws_clients.load(Ordering::Relaxed), N as u64);
    s.hub
        .push_state(state("bus-1", -16.921, 145.77, Some("R1"), None, 2));
    for _ in 0..N {
        let ts = tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
            .await
            .expect("update")
            .expect("done");
        assert_eq!(ts, 2);
    }
    for t in tasks {
        t.await.expect("client task");
    }
}
