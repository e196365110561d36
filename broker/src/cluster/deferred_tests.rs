//! Held states against a real hub and GTFS-Realtime live set: a read sees what it would have
//! seen had every state been pushed on arrival.

use std::sync::Arc;
use std::time::Instant;

use fleetmq_bridge::{Hub, HubConfig};
use geo_engine::{Event, Network, PipelineConfig, VehicleState};

use super::{Deferred, Received};
use crate::http::HubSink;
use crate::ingest::{Ingest, StateSink};
use crate::metrics::Metrics;

fn json(vehicle: &str, ts: i64) -> Arc<str> {
    let state = serde_json::json!({
        "vehicle": vehicle, "lat": -16.92, "lon": 145.77, "raw_lat": -16.92, "raw_lon": 145.77,
        "ts": ts, "route": "R1", "status": "moving", "received_at": ts, "processed_at": ts
    });
    Arc::from(state.to_string())
}

fn node(max_held: usize) -> (Hub, Arc<Ingest>, Arc<Deferred>) {
    let hub = Hub::new(HubConfig::default());
    let ingest = Arc::new(Ingest::new(
        Arc::new(Network::empty()),
        PipelineConfig::default(),
        Vec::new(),
        Arc::new(Metrics::default()),
    ));
    let sinks = vec![Arc::new(HubSink(hub.clone())) as Arc<dyn StateSink>];
    let deferred = Deferred::with_max_held(sinks, ingest.clone(), Some(hub.clone()), max_held);
    (hub, ingest, deferred)
}

/// A state as the receiver hands it on; `ts` 1 is the vehicle's first.
fn receive(d: &Deferred, vehicle: &str, ts: i64) {
    d.state(
        at(vehicle, Some("R1"), ts == 1),
        json(vehicle, ts),
        None,
        false,
    );
}

fn at<'a>(vehicle: &'a str, route: Option<&'a str>, first: bool) -> Received<'a> {
    Received {
        vehicle,
        route,
        trip: None,
        first,
        arrived: Instant::now(),
    }
}

fn pushed_ts(hub: &Hub, vehicle: &str) -> Option<i64> {
    hub.pushed(vehicle).map(|s| s.ts)
}

fn live_ts(ingest: &Ingest, vehicle: &str) -> Option<i64> {
    let live = ingest.live().snapshot();
    live.iter()
        .find(|l| *l.state.vehicle == *vehicle)
        .map(|l| l.state.ts)
}

#[test]
fn an_unwatched_vehicles_states_wait_for_a_read_which_sees_the_latest() {
    let (hub, ingest, d) = node(100);
    receive(&d, "bus-1", 1);
    assert_eq!(
        pushed_ts(&hub, "bus-1"),
        Some(1),
        "a first state goes in at once"
    );
    assert_eq!(hub.len(), 1);
    receive(&d, "bus-1", 2);
    receive(&d, "bus-1", 3);
    assert_eq!(d.held(), 1, "one held state per vehicle");
    assert_eq!(pushed_ts(&hub, "bus-1"), Some(1), "held, not pushed");
    // A read of the hub catches up first.
    assert_eq!(hub.latest("bus-1").map(|s| s.ts), Some(3));
    assert_eq!(d.held(), 0);
    // So does the GTFS-Realtime live set's.
    receive(&d, "bus-1", 4);
    assert_eq!(d.held(), 1);
    assert_eq!(live_ts(&ingest, "bus-1"), Some(4));
    assert_eq!(pushed_ts(&hub, "bus-1"), Some(4));
}

#[test]
fn a_held_state_older_than_the_hubs_is_dropped() {
    let (hub, _ingest, d) = node(100);
    receive(&d, "bus-1", 1);
    receive(&d, "bus-1", 5);
    // The vehicle moved to this node: its own newer state goes into the hub directly.
    let own: VehicleState = serde_json::from_str(&json("bus-1", 6)).expect("state");
    hub.push_state(Arc::new(own));
    assert_eq!(hub.latest("bus-1").map(|s| s.ts), Some(6), "not the held 5");
}

#[test]
fn an_event_of_an_unwatched_vehicle_leaves_its_state_held() {
    let (hub, _ingest, d) = node(100);
    receive(&d, "bus-1", 1);
    receive(&d, "bus-1", 2);
    let event: Event = serde_json::from_value(serde_json::json!({
        "kind": "deviation", "vehicle": "bus-1", "ts": 2, "lat": -16.92, "lon": 145.77
    }))
    .expect("an event");
    d.event(&Arc::new(event));
    assert_eq!((d.held(), pushed_ts(&hub, "bus-1")), (1, Some(1)));
    assert_eq!(
        hub.metrics()
            .events_pushed
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the event itself went into the hub"
    );
    // A read still sees the latest state.
    assert_eq!(hub.latest("bus-1").map(|s| s.ts), Some(2));
}

#[test]
fn past_the_bound_everything_held_is_pushed() {
    let (hub, _ingest, d) = node(2);
    for v in ["a", "b", "c"] {
        receive(&d, v, 1);
        receive(&d, v, 2);
    }
    // "a" and "b" held 2; "c"'s second state found the bound reached: all pushed.
    assert_eq!(d.held(), 0);
    for v in ["a", "b", "c"] {
        assert_eq!(pushed_ts(&hub, v), Some(2), "{v}");
    }
}

#[test]
fn a_state_that_does_not_parse_is_dropped_when_pushed() {
    let (hub, _ingest, d) = node(100);
    receive(&d, "bus-1", 1);
    d.state(
        at("bus-1", None, false),
        Arc::from("{not json"),
        None,
        false,
    );
    d.state(at("bus-1", None, false), json("bus-2", 9), None, false);
    assert_eq!(hub.latest("bus-1").map(|s| s.ts), Some(1));
    assert!(hub.latest("bus-2").is_none(), "a state of another vehicle");
}

#[test]
fn a_catch_up_pushes_every_held_state_over_several_chunks() {
    let (hub, _ingest, d) = node(10_000);
    let vehicles: Vec<String> = (0..3 * super::CHUNK + 5).map(|i| format!("v{i}")).collect();
    for v in &vehicles {
        receive(&d, v, 1);
        receive(&d, v, 2);
    }
    assert_eq!(d.held(), vehicles.len());
    assert!(d.held_since("v0").is_some() && d.held_since("nobody").is_none());
    assert!(d.push_held("v0").is_some() && d.push_held("nobody").is_none());
    assert_eq!(
        (d.held(), pushed_ts(&hub, "v0")),
        (vehicles.len() - 1, Some(2))
    );
    d.catch_up();
    assert_eq!(d.held(), 0);
    assert!(vehicles.iter().all(|v| pushed_ts(&hub, v) == Some(2)));
    assert!(d.push_held("v0").is_none());
}
