//! Processed outputs across nodes. [`OutputSink`] puts every state and event this node
//! processes on the bus; [`LocalOutputs`] feeds the other nodes' into this node's outputs: the
//! router (retained `vehicles/{id}`, `events/{id}/{kind}` for its MQTT subscribers), the bridge
//! hub (`/ws`, SSE, REST lists, `near`, `bbox`), the trip book (riders' rights) and the
//! GTFS-Realtime live set. Those never reach a [`StateSink`] of ingest, so nothing received is
//! published back onto the bus (and nothing is written to Redis or PostgreSQL twice: the node
//! that processed a vehicle writes it).
//!
//! # Ordering key
//! Each output carries [`Order`] `(epoch, ts, seq)`, compared in that order: `epoch` is the
//! vehicle's lease epoch (0 until leases exist; a new owner's epoch is higher, so a former
//! owner's late outputs lose), `ts` the fix time of the state or the event's time, and `seq` a
//! counter of the sending node breaking ties between outputs of one fix (an event and the
//! offline state share a `ts`). `ts` is the vehicle's own clock, which the pipeline only lets
//! go forward, so the key keeps growing when the vehicle moves to another node even at epoch
//! 0. Receivers keep the last key per vehicle, one for states and one for events, and drop
//! anything not greater: duplicates and stale outputs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use geo_engine::schedule::TripFit;
use geo_engine::{Event, VehicleState};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{self, Bus, Inbox};
use crate::ingest::{Ingest, StateSink, event_message, state_message};
use crate::router::RouterMsg;

/// Vehicles whose last keys a receiver remembers; past it the memory starts over (a duplicate
/// may then pass once).
const MAX_ORDERED_VEHICLES: usize = 1_000_000;

/// The ordering key of one output (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Order {
    pub epoch: u64,
    pub ts: i64,
    pub seq: u64,
}

/// One output on the bus (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<'a> {
    /// The node that processed it; its own messages come back to it and are skipped.
    node: Cow<'a, str>,
    order: Order,
    #[serde(flatten)]
    body: Body<'a>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
// One envelope exists at a time, on the stack of the sink or the receiver: boxing the state
// would cost an allocation per output for nothing.
#[allow(clippy::large_enum_variant)]
enum Body<'a> {
    State {
        state: Cow<'a, VehicleState>,
        /// The trip it runs, for the GTFS-Realtime feeds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fit: Option<Cow<'a, TripFit>>,
        #[serde(default)]
        deviated: bool,
    },
    Event {
        event: Cow<'a, Event>,
    },
}

/// This node's processed outputs onto the bus.
pub struct OutputSink {
    bus: Arc<Bus>,
    node: Arc<str>,
    seq: AtomicU64,
}

impl OutputSink {
    pub fn new(bus: Arc<Bus>, node: Arc<str>) -> OutputSink {
        OutputSink {
            bus,
            node,
            seq: AtomicU64::new(0),
        }
    }

    fn send(&self, vehicle: &str, ts: i64, body: Body<'_>) {
        let envelope = Envelope {
            node: Cow::Borrowed(&self.node),
            order: Order {
                epoch: 0,
                ts,
                seq: self.seq.fetch_add(1, Relaxed),
            },
            body,
        };
        match serde_json::to_vec(&envelope) {
            Ok(json) => self.bus.publish(bus::channel(vehicle), Bytes::from(json)),
            Err(e) => tracing::error!(error = %e, "cluster: output not serializable"),
        }
    }
}

impl StateSink for OutputSink {
    fn state(&self, state: &Arc<VehicleState>) {
        self.fitted_state(state, None, false);
    }

    fn fitted_state(&self, state: &Arc<VehicleState>, fit: Option<&TripFit>, deviated: bool) {
        let body = Body::State {
            state: Cow::Borrowed(state),
            fit: fit.map(Cow::Borrowed),
            deviated,
        };
        self.send(&state.vehicle, state.ts, body);
    }

    fn event(&self, event: &Arc<Event>) {
        let body = Body::Event {
            event: Cow::Borrowed(event),
        };
        self.send(&event.vehicle, event.ts, body);
    }

    /// Every node restores from the same Redis: nothing to tell the others.
    fn restored(&self, _: &Arc<VehicleState>) {}
}

/// The last keys seen of one vehicle.
#[derive(Default, Clone, Copy)]
struct Seen {
    state: Option<Order>,
    event: Option<Order>,
}

/// Other nodes' outputs into this node's.
pub struct LocalOutputs {
    pub node: Arc<str>,
    pub router: mpsc::Sender<RouterMsg>,
    /// The outputs beside the router that serve this node's clients (trip book, hub); never
    /// the bus, Redis or history sinks.
    pub sinks: Vec<Arc<dyn StateSink>>,
    /// For the GTFS-Realtime live set.
    pub ingest: Arc<Ingest>,
}

impl LocalOutputs {
    /// Takes other nodes' outputs from `inbox` until `stop` or the router is gone.
    pub async fn run(self, mut inbox: Inbox, stop: CancellationToken) {
        let mut seen: HashMap<String, Seen> = HashMap::new();
        loop {
            let next = tokio::select! {
                m = inbox.recv() => m,
                () = stop.cancelled() => return,
            };
            let Some((_, payload)) = next else { return };
            let envelope: Envelope<'static> = match serde_json::from_slice(&payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: unreadable output on the bus; skipped");
                    continue;
                }
            };
            if *envelope.node == *self.node {
                continue;
            }
            if !fresh(&mut seen, &envelope) {
                continue;
            }
            let message = match envelope.body {
                Body::State {
                    state,
                    fit,
                    deviated,
                } => {
                    let state = Arc::new(state.into_owned());
                    for sink in &self.sinks {
                        sink.state(&state);
                    }
                    self.ingest
                        .remote_state(state.clone(), fit.map(Cow::into_owned), deviated);
                    state_message(&state)
                }
                Body::Event { event } => {
                    let event = Arc::new(event.into_owned());
                    for sink in &self.sinks {
                        sink.event(&event);
                    }
                    event_message(&event)
                }
            };
            let publish = RouterMsg::Publish {
                message,
                qos2_pkid: None,
            };
            if self.router.send(publish).await.is_err() {
                return;
            }
        }
    }
}

/// Whether `e` is newer than what was seen of its vehicle (and records it if so).
fn fresh(seen: &mut HashMap<String, Seen>, e: &Envelope<'_>) -> bool {
    let vehicle = match &e.body {
        Body::State { state, .. } => &state.vehicle,
        Body::Event { event } => &event.vehicle,
    };
    if seen.len() >= MAX_ORDERED_VEHICLES && !seen.contains_key(vehicle.as_str()) {
        seen.clear();
    }
    let last = seen.entry(vehicle.clone()).or_default();
    let slot = match e.body {
        Body::State { .. } => &mut last.state,
        Body::Event { .. } => &mut last.event,
    };
    if slot.is_some_and(|s| s >= e.order) {
        return false;
    }
    *slot = Some(e.order);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ts: i64) -> VehicleState {
        serde_json::from_value(serde_json::json!({
            "vehicle": "v", "lat": 1.0, "lon": 2.0, "raw_lat": 1.0, "raw_lon": 2.0,
            "ts": ts, "status": "moving", "received_at": ts, "processed_at": ts
        }))
        .expect("a state")
    }

    fn envelope(ts: i64, seq: u64) -> Envelope<'static> {
        Envelope {
            node: "a".into(),
            order: Order { epoch: 0, ts, seq },
            body: Body::State {
                state: Cow::Owned(state(ts)),
                fit: None,
                deviated: false,
            },
        }
    }

    #[test]
    fn duplicates_and_stale_outputs_are_dropped() {
        let mut seen = HashMap::new();
        assert!(fresh(&mut seen, &envelope(10, 5)));
        assert!(!fresh(&mut seen, &envelope(10, 5)), "duplicate");
        assert!(!fresh(&mut seen, &envelope(9, 99)), "older fix");
        assert!(fresh(&mut seen, &envelope(10, 6)), "same fix, later output");
        // Another node, whose counter is far behind, with the next fix.
        assert!(fresh(&mut seen, &envelope(11, 0)));
    }

    #[test]
    fn the_envelope_round_trips() {
        let json = serde_json::to_vec(&envelope(10, 1)).expect("json");
        let back: Envelope<'static> = serde_json::from_slice(&json).expect("parses");
        assert_eq!(
            back.order,
            Order {
                epoch: 0,
                ts: 10,
                seq: 1
            }
        );
        assert!(matches!(back.body, Body::State { ref state, .. } if state.ts == 10));
    }
}
