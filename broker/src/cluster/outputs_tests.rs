//! Outputs across two nodes over an in-memory transport: what one node's [`OutputSink`] puts on
//! its bus reaches the other's router and sinks, batched into frames, with the state's JSON
//! handed on byte for byte.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use geo_engine::{Event, Network, PipelineConfig, VehicleState};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{LocalOutputs, OutputSink};
use crate::cluster::bus::{self, Bus, Messages, Transport};
use crate::cluster::record::{self, Kind, Record};
use crate::ingest::{Ingest, StateSink};
use crate::metrics::Metrics;
use crate::router::RouterMsg;

/// One Redis server's pub/sub, in memory: every frame published reaches every subscriber.
struct Loopback {
    tx: broadcast::Sender<(String, Bytes)>,
    publishes: AtomicUsize,
}

impl Transport for Loopback {
    fn shards(&self) -> u16 {
        1
    }
    fn publish(&self, batch: Vec<(String, Bytes)>) -> BoxFuture<'_, redis::RedisResult<()>> {
        self.publishes.fetch_add(batch.len(), Relaxed);
        for m in batch {
            let _ = self.tx.send(m);
        }
        Box::pin(async { Ok(()) })
    }
    fn ping(&self) -> BoxFuture<'_, redis::RedisResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn subscribe(&self, _: Vec<String>) -> BoxFuture<'_, redis::RedisResult<Messages>> {
        let rx = self.tx.subscribe();
        Box::pin(async move {
            let messages = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.ok().map(|m| (m, rx))
            });
            Ok(messages.boxed())
        })
    }
}

/// Ingest without a network or sinks: the receiving node's GTFS-Realtime live set.
fn empty_ingest() -> Arc<Ingest> {
    Arc::new(Ingest::new(
        Arc::new(Network::empty()),
        PipelineConfig::default(),
        Vec::new(),
        Arc::new(Metrics::default()),
    ))
}

/// What a sink of the receiving node was given.
#[derive(Default)]
struct Recorded {
    json: Mutex<Vec<String>>,
    events: AtomicUsize,
}

impl StateSink for Recorded {
    fn state(&self, _: &Arc<VehicleState>) {
        panic!("a received state comes with its JSON");
    }
    fn state_json(&self, _: &Arc<VehicleState>, json: &Arc<str>) {
        self.json.lock().expect("lock").push(json.to_string());
    }
    fn event(&self, _: &Arc<Event>) {
        self.events.fetch_add(1, Relaxed);
    }
}

fn state(ts: i64) -> Arc<VehicleState> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "vehicle": "bus-1", "lat": 1.5, "lon": 2.25, "raw_lat": 1.5, "raw_lon": 2.25,
            "ts": ts, "status": "moving", "received_at": ts, "processed_at": ts
        }))
        .expect("a state"),
    )
}

#[tokio::test]
async fn states_of_a_few_milliseconds_go_in_one_frame_and_arrive_as_sent() {
    let stop = CancellationToken::new();
    let transport = Arc::new(Loopback {
        tx: broadcast::channel(64).0,
        publishes: AtomicUsize::new(0),
    });
    let bus_a = Arc::new(Bus::start(
        transport.clone(),
        Bytes::from(record::prefix("a")),
        stop.clone(),
    ));
    let bus_b = Bus::start(
        transport.clone(),
        Bytes::from(record::prefix("b")),
        stop.clone(),
    );
    let (router, mut routed) = mpsc::channel(16);
    let recorded = Arc::new(Recorded::default());
    let ingest = empty_ingest();
    let outputs = LocalOutputs {
        node: "b".into(),
        router,
        trips: None,
        // No hub: nothing is held back.
        outputs: super::Deferred::new(vec![recorded.clone()], ingest, None),
    };
    tokio::spawn(outputs.run(bus_b.subscribe(bus::channels()), stop.clone()));
    // Wait until b listens (a broadcast sent before is not received).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !bus_b.is_up() {
        assert!(tokio::time::Instant::now() < deadline, "b never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let sink = OutputSink::new(bus_a, Arc::new(OnceLock::new()));
    // Made by the sending node: field order and number formatting are its own.
    let sent: Vec<Arc<str>> = (1..=3)
        .map(|ts| Arc::from(serde_json::to_string(&*state(ts)).expect("json")))
        .collect();
    for (ts, json) in (1..=3).zip(&sent) {
        sink.fitted_state(&state(ts), None, false, json);
    }
    let event: Event = serde_json::from_value(serde_json::json!({
        "kind": "online", "vehicle": "bus-1", "ts": 3, "lat": 1.5, "lon": 2.25
    }))
    .expect("an event");
    let event_json = serde_json::to_vec(&event).expect("json");
    sink.event(&Arc::new(event));

    // The outputs of one frame come to the router together, in their order.
    let mut messages = Vec::new();
    while messages.len() < sent.len() + 1 {
        match tokio::time::timeout(Duration::from_secs(5), routed.recv())
            .await
            .expect("routed in time")
        {
            Some(RouterMsg::PublishMany(batch)) => messages.extend(batch),
            other => panic!("not a publish of the frame: {other:?}"),
        }
    }
    assert_eq!(messages.len(), sent.len() + 1, "nothing else routed");
    let mut topics = Vec::new();
    for (expected, message) in sent.iter().zip(&messages) {
        assert_eq!(
            &message.payload[..],
            expected.as_bytes(),
            "the sender's JSON"
        );
        assert!(message.retain);
        topics.push(message.topic.to_string());
    }
    let message = &messages[sent.len()];
    assert_eq!(&*message.topic, "events/bus-1/online");
    assert_eq!(&message.payload[..], &event_json[..], "the sender's JSON");
    assert_eq!(topics, vec!["vehicles/bus-1"; 3]);
    let json = recorded.json.lock().expect("lock").clone();
    assert_eq!(json, sent.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(recorded.events.load(Relaxed), 1);
    // Four outputs published within the linger: one frame.
    assert_eq!(transport.publishes.load(Relaxed), 1);
    stop.cancel();
}

/// A receiving node's outputs (`b`), with its trip book and a recorder for its hub.
fn receiver(
    ingest: Arc<Ingest>,
    trips: Option<Arc<crate::trips::TripBook>>,
) -> (LocalOutputs, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let outputs = LocalOutputs {
        node: "b".into(),
        router: mpsc::channel(1).0,
        trips,
        outputs: super::Deferred::new(vec![recorded.clone()], ingest, None),
    };
    (outputs, recorded)
}

fn state_record<'a>(ts: i64, json: &'a str, fit: Option<&'a [u8]>) -> Record<'a> {
    Record {
        kind: Kind::State,
        order: super::Order {
            epoch: 1,
            ts,
            seq: 1,
        },
        vehicle: "bus-1",
        route: Some("R1"),
        trip: Some("T\"7"),
        deviated: true,
        fit,
        json: json.as_bytes(),
    }
}

fn state_json(ts: i64) -> String {
    serde_json::json!({
        "vehicle": "bus-1", "lat": 1.5, "lon": 2.25, "raw_lat": 1.5, "raw_lon": 2.25,
        "ts": ts, "route": "R1", "trip": "T\"7", "status": "moving", "received_at": ts,
        "processed_at": ts
    })
    .to_string()
}

/// Reads `frame` as node `b` does; the messages it routes.
fn read(outputs: &LocalOutputs, frame: Vec<u8>) -> Vec<Arc<crate::message::Message>> {
    let mut routed = Vec::new();
    let mut seen = crate::hash::FastMap::default();
    outputs.frame(
        &Bytes::from(frame),
        Instant::now(),
        &mut seen,
        &mut routed,
        &mut Vec::new(),
    );
    routed
}

/// A state's route and trip travel beside its JSON: the trip book learns the trip before the
/// message is routed, without the state being parsed.
#[test]
fn the_route_and_trip_reach_the_trip_book() {
    let book = Arc::new(crate::trips::TripBook::new(Duration::from_secs(60)));
    let (outputs, recorded) = receiver(empty_ingest(), Some(book.clone()));
    let json = state_json(5);
    let mut frame = record::prefix("a");
    assert!(record::put(&mut frame, &state_record(5, &json, None)));
    let routed = read(&outputs, frame);
    assert_eq!(routed.len(), 1);
    assert_eq!(&*routed[0].topic, "vehicles/bus-1");
    assert!(book.runs_any("bus-1", &[], &["T\"7".to_owned()]));
    assert_eq!(recorded.json.lock().expect("lock").clone(), vec![json]);
}

/// A frame of another bus format (a node of another fleetmq version), a record cut short and a
/// node's own frame are skipped; nothing panics, and what came before the bad record is kept.
#[test]
fn foreign_cut_and_own_frames_are_skipped() {
    let (outputs, recorded) = receiver(empty_ingest(), None);
    let v1 = br#"a
{"order":{"epoch":0,"ts":5,"seq":1},"kind":"state","vehicle":"bus-1"}
{}
"#;
    assert!(read(&outputs, v1.to_vec()).is_empty());
    let json = state_json(5);
    let mut own = record::prefix("b");
    assert!(record::put(&mut own, &state_record(5, &json, None)));
    assert!(read(&outputs, own).is_empty());
    let mut cut = record::prefix("a");
    assert!(record::put(&mut cut, &state_record(5, &json, None)));
    let whole = cut.len();
    assert!(record::put(&mut cut, &state_record(6, &json, None)));
    cut.truncate(whole + 10);
    assert_eq!(read(&outputs, cut).len(), 1, "the record before the cut");
    assert_eq!(recorded.json.lock().expect("lock").len(), 1);
}

/// A state's trip fit travels in its record and reaches the receiving node's GTFS-Realtime live
/// set as the sending node had it.
#[test]
fn the_trip_fit_in_the_record_reaches_the_live_set() {
    let ingest = empty_ingest();
    let (outputs, _) = receiver(ingest.clone(), None);
    let fit = geo_engine::schedule::TripFit {
        trip: 7,
        trip_id: "T\"7".into(),
        inferred: true,
        start_date: 20_261_203,
        day_start_ms: 1_764_720_000_000,
        delay_s: Some(-42),
        progress_m: Some(1_234.567_891_234_5),
        next: 3,
        at_stop: None,
        ts: 5,
        finished: false,
    };
    let fit_bytes = record::fit_bytes(&fit).expect("fit bytes");
    let json = state_json(5);
    let mut frame = record::prefix("a");
    assert!(record::put(
        &mut frame,
        &state_record(5, &json, Some(&fit_bytes))
    ));
    assert_eq!(read(&outputs, frame).len(), 1);
    let live = ingest.live().snapshot();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].fit.as_ref(), Some(&fit));
    assert_eq!(live[0].deviated_since, Some(5));
}
