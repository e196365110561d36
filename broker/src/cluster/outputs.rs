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
//!
//! # Records (docs/redis.md)
//! Each output is a bus record (the bus joins a few milliseconds of them into one frame behind
//! the sending node's line, `bus`), in the binary format of [`record`]: the key, the vehicle,
//! its route and trip and the state's deviation and trip fit, then the state's JSON exactly as
//! its node made it for `vehicles/{id}`, or the event's `events/{id}/{kind}` payload. A
//! receiver reads the header fields first (a duplicate or stale output costs no more), tells
//! the trip book the route and trip, hands the received JSON on as the MQTT payload, and gives
//! the state to [`Deferred`], which parses it once for the hub and the GTFS-Realtime set, now
//! or when they are next read. Nothing received is serialized again; an event is parsed once,
//! for the hub's recent events.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use fleetmq_codec::ByteString;
use geo_engine::schedule::TripFit;
use geo_engine::{Event, VehicleState};
use tokio::sync::mpsc;

use crate::persist::fence::Fence;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Inbox};
use super::deferred::Deferred;
use super::record::{self, Kind, Origin, Record, Records};
use crate::hash::FastMap;
use crate::ingest::{StateSink, event_json_message, state_topic, state_topic_message};
use crate::router::RouterMsg;
use crate::trips::TripBook;

/// Vehicles whose last keys a receiver remembers; past it the memory starts over: then one
/// duplicate or older output of each vehicle may pass once (routed as its retained state until
/// the vehicle's next one; the hub drops it, `deferred`'s age check).
const MAX_ORDERED_VEHICLES: usize = 1_000_000;

/// Nodes of another bus format a receiver warns about, once each.
const MAX_WARNED: usize = 16;

/// Largest record buffer a thread keeps between outputs, bytes (a state's record is ~0.7 KB).
const MAX_KEPT_RECORD: usize = 16 * 1024;

thread_local! {
    /// Each output's record is made here, then copied into its frame by [`Bus::publish`]: one
    /// buffer per thread instead of an allocation per output.
    static RECORD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The ordering key of one output (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub epoch: u64,
    pub ts: i64,
    pub seq: u64,
}

/// This node's processed outputs onto the bus.
pub struct OutputSink {
    bus: Arc<Bus>,
    seq: AtomicU64,
    /// The lease table, once leases run: the epoch each vehicle is held under.
    leases: Arc<OnceLock<Arc<dyn Fence>>>,
}

impl OutputSink {
    pub fn new(bus: Arc<Bus>, leases: Arc<OnceLock<Arc<dyn Fence>>>) -> OutputSink {
        OutputSink {
            bus,
            seq: AtomicU64::new(0),
            leases,
        }
    }

    /// Puts `r` on the bus with its key: the vehicle's epoch, `ts`, this node's next `seq`.
    fn send(&self, ts: i64, mut r: Record<'_>) {
        r.order = Order {
            epoch: self
                .leases
                .get()
                .and_then(|l| l.epoch(r.vehicle))
                .unwrap_or(0),
            ts,
            seq: self.seq.fetch_add(1, Relaxed),
        };
        RECORD.with_borrow_mut(|out| {
            out.clear();
            if record::put(out, &r) {
                self.bus.publish(r.vehicle, out);
            } else {
                tracing::error!("cluster: a vehicle id too long for the bus; output not sent");
            }
            if out.capacity() > MAX_KEPT_RECORD {
                *out = Vec::new();
            }
        });
    }

    fn send_state(&self, state: &VehicleState, fit: Option<&TripFit>, deviated: bool, json: &str) {
        let fit = match fit.map(record::fit_bytes).transpose() {
            Ok(fit) => fit,
            Err(e) => {
                tracing::error!(error = %e, "cluster: trip fit not serializable; sent without");
                None
            }
        };
        let r = Record {
            kind: Kind::State,
            order: ORDER_UNSET,
            vehicle: &state.vehicle,
            route: state.route.as_deref(),
            trip: state.trip.as_deref(),
            deviated,
            fit: fit.as_deref(),
            json: json.as_bytes(),
        };
        self.send(state.ts, r);
    }
}

/// Filled in by [`OutputSink::send`].
const ORDER_UNSET: Order = Order {
    epoch: 0,
    ts: 0,
    seq: 0,
};

impl StateSink for OutputSink {
    fn state(&self, state: &Arc<VehicleState>) {
        match serde_json::to_string(&**state) {
            Ok(json) => self.send_state(state, None, false, &json),
            Err(e) => tracing::error!(error = %e, "cluster: state not serializable"),
        }
    }

    fn state_json(&self, state: &Arc<VehicleState>, json: &Arc<str>) {
        self.send_state(state, None, false, json);
    }

    fn fitted_state(
        &self,
        state: &Arc<VehicleState>,
        fit: Option<&TripFit>,
        deviated: bool,
        json: &Arc<str>,
    ) {
        self.send_state(state, fit, deviated, json);
    }

    fn event(&self, event: &Arc<Event>) {
        let json = match serde_json::to_vec(&**event) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "cluster: event not serializable");
                return;
            }
        };
        let r = Record {
            kind: Kind::Event(event.kind),
            order: ORDER_UNSET,
            vehicle: &event.vehicle,
            route: event.route.as_deref(),
            trip: event.trip.as_deref(),
            deviated: false,
            fit: None,
            json: &json,
        };
        self.send(event.ts, r);
    }

    /// Every node restores from the same Redis: nothing to tell the others.
    fn restored(&self, _: &Arc<VehicleState>) {}
}

/// The last keys seen of one vehicle, and its `vehicles/{id}` topic (made once per vehicle,
/// shared by each of its state messages: `ingest::slot`).
struct Seen {
    state: Option<Order>,
    event: Option<Order>,
    state_topic: ByteString,
}

/// Other nodes' outputs into this node's.
pub struct LocalOutputs {
    pub node: Arc<str>,
    pub router: mpsc::Sender<RouterMsg>,
    /// Told each state's route and trip before its MQTT message is routed.
    pub trips: Option<Arc<TripBook>>,
    /// The hub and the GTFS-Realtime live set, through their holding stage; never the bus,
    /// Redis or history sinks.
    pub outputs: Arc<Deferred>,
}

impl LocalOutputs {
    /// Takes other nodes' outputs from `inbox` until `stop` or the router is gone.
    pub async fn run(self, mut inbox: Inbox, stop: CancellationToken) {
        let mut seen: FastMap<String, Seen> = FastMap::default();
        // A frame holds at most the records of the bus's linger.
        let mut routed = Vec::new();
        let mut warned: Vec<Box<[u8]>> = Vec::new();
        loop {
            let next = tokio::select! {
                m = inbox.recv() => m,
                () = stop.cancelled() => return,
            };
            let Some((_, frame)) = next else { return };
            self.frame(&frame, Instant::now(), &mut seen, &mut routed, &mut warned);
            // The frame's messages go to the router together, after all of it is read: one
            // send and one wake-up per frame, not per record.
            if !routed.is_empty() {
                let next = Vec::with_capacity(routed.len());
                let batch = RouterMsg::PublishMany(std::mem::replace(&mut routed, next));
                if self.router.send(batch).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Reads one frame, which came at `arrived`, into the sinks; its messages for the router
    /// into `routed`.
    fn frame(
        &self,
        frame: &Bytes,
        arrived: Instant,
        seen: &mut FastMap<String, Seen>,
        routed: &mut Vec<Arc<crate::message::Message>>,
        warned: &mut Vec<Box<[u8]>>,
    ) {
        let records = match record::origin(frame, &self.node) {
            Origin::Me => return,
            Origin::Other(records) => records,
            Origin::Foreign(line) => {
                if warned.len() < MAX_WARNED && !warned.iter().any(|w| **w == *line) {
                    warned.push(line.into());
                    tracing::warn!(
                        sender = %String::from_utf8_lossy(line),
                        "cluster: a frame not of this node's bus format (fleetmq-bus/3); every \
                         node of a cluster must run the same fleetmq version: its outputs are \
                         skipped"
                    );
                }
                return;
            }
        };
        for r in Records::new(records) {
            match r {
                Ok(r) => routed.extend(self.output(frame, arrived, &r, seen)),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: unreadable output on the bus; the rest of its frame skipped")
                }
            }
        }
    }

    /// One record of `frame` (come at `arrived`) into the sinks; the message for the router,
    /// `None` when stale or unreadable.
    fn output(
        &self,
        frame: &Bytes,
        arrived: Instant,
        r: &Record<'_>,
        seen: &mut FastMap<String, Seen>,
    ) -> Option<Arc<crate::message::Message>> {
        let (first, state_topic) = fresh(seen, r)?;
        match r.kind {
            Kind::State => {
                let json: Arc<str> = Arc::from(std::str::from_utf8(r.json).ok()?);
                let fit = r.fit.and_then(|f| match record::read_fit(f) {
                    Ok(fit) => Some(fit),
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: unreadable trip fit; state taken without");
                        None
                    }
                });
                if let Some(book) = &self.trips {
                    book.observe(r.vehicle, r.route, r.trip, arrived);
                }
                let state = super::deferred::Received {
                    vehicle: r.vehicle,
                    route: r.route,
                    trip: r.trip,
                    first,
                    arrived,
                };
                self.outputs.state(state, json.clone(), fit, r.deviated);
                Some(state_topic_message(state_topic, json))
            }
            Kind::Event(kind) => {
                let event: Event = match serde_json::from_slice(r.json) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: unreadable event on the bus; skipped");
                        return None;
                    }
                };
                if event.vehicle != r.vehicle || event.kind != kind {
                    return None;
                }
                self.outputs.event(&Arc::new(event));
                Some(event_json_message(r.vehicle, kind, frame.slice_ref(r.json)))
            }
        }
    }
}

/// Whether `r`'s output is newer than what was seen of its vehicle (and records it if so):
/// `None` if not, else whether it is the first of its kind seen of the vehicle, and the
/// vehicle's state topic.
fn fresh(seen: &mut FastMap<String, Seen>, r: &Record<'_>) -> Option<(bool, ByteString)> {
    // One lookup for a known vehicle (every output but its first).
    let last = if let Some(last) = seen.get_mut(r.vehicle) {
        last
    } else {
        if seen.len() >= MAX_ORDERED_VEHICLES {
            seen.clear();
        }
        seen.entry(r.vehicle.to_owned()).or_insert_with(|| Seen {
            state: None,
            event: None,
            state_topic: state_topic(r.vehicle),
        })
    };
    let slot = match r.kind {
        Kind::State => &mut last.state,
        Kind::Event(_) => &mut last.event,
    };
    if slot.is_some_and(|s| s >= r.order) {
        return None;
    }
    Some((slot.replace(r.order).is_none(), last.state_topic.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: i64, seq: u64, kind: Kind) -> Record<'static> {
        Record {
            kind,
            order: Order { epoch: 0, ts, seq },
            vehicle: "v",
            route: None,
            trip: None,
            deviated: false,
            fit: None,
            json: b"{}",
        }
    }

    #[test]
    fn duplicates_and_stale_outputs_are_dropped() {
        let mut seen = FastMap::default();
        let state = |ts, seq| record(ts, seq, Kind::State);
        let mut fresh = |r: &Record<'_>| fresh(&mut seen, r).map(|(first, _)| first);
        assert_eq!(fresh(&state(10, 5)), Some(true), "the first");
        assert_eq!(fresh(&state(10, 5)), None, "duplicate");
        assert_eq!(fresh(&state(9, 99)), None, "older fix");
        assert_eq!(fresh(&state(10, 6)), Some(false), "same fix, later output");
        // Another node, whose counter is far behind, with the next fix.
        assert_eq!(fresh(&state(11, 0)), Some(false));
        // Events are ordered apart from states.
        let online = Kind::Event(geo_engine::EventKind::Online);
        assert_eq!(fresh(&record(10, 1, online)), Some(true));
    }

    #[test]
    fn a_vehicles_state_topic_is_made_once_and_shared() {
        let mut seen = FastMap::default();
        let (_, a) = fresh(&mut seen, &record(10, 1, Kind::State)).expect("fresh");
        let (_, b) = fresh(&mut seen, &record(11, 1, Kind::State)).expect("fresh");
        assert_eq!(&*a, "vehicles/v");
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "one buffer");
    }
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod across;
