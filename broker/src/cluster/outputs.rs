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
//! the sending node's id, `bus`): a header line of JSON with the key, the vehicle and the kind;
//! a state's header is followed by a second line, the state's JSON exactly as its node made it
//! for `vehicles/{id}`. A state's header also names its route and trip. A receiver reads the
//! header first (a duplicate or stale output costs no more), tells the trip book the route and
//! trip, hands the received JSON on as the MQTT payload, and gives the state to [`Deferred`],
//! which parses it once for the hub and the GTFS-Realtime set, now or when they are next read.
//! The state is never serialized again.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use geo_engine::schedule::TripFit;
use geo_engine::{Event, VehicleState};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::persist::fence::Fence;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Inbox};
use super::deferred::Deferred;
use crate::hash::FastMap;
use crate::ingest::{StateSink, event_message, state_json_message};
use crate::router::RouterMsg;
use crate::trips::TripBook;

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

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// A processed state: its JSON is the record's next line.
    State,
    Event,
}

/// The first line of a record (module doc).
#[derive(Debug, Serialize, Deserialize)]
struct Header<'a> {
    order: Order,
    kind: Kind,
    #[serde(borrow)]
    vehicle: Cow<'a, str>,
    /// A state's trip, for the GTFS-Realtime feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fit: Option<Cow<'a, TripFit>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deviated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<Cow<'a, Event>>,
    /// A state's route and trip, read without parsing the state. `None` from a node that does
    /// not send it: the receiver then parses the state at once.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    glance: Option<Glance<'a>>,
}

/// A state's route and trip in its header.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Glance<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    route: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    trip: Option<Cow<'a, str>>,
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

    /// Puts one record on the bus: `header`, then the state's `json` when there is one.
    fn send(&self, vehicle: &str, ts: i64, mut header: Header<'_>, json: Option<&str>) {
        header.order = Order {
            epoch: self
                .leases
                .get()
                .and_then(|l| l.epoch(vehicle))
                .unwrap_or(0),
            ts,
            seq: self.seq.fetch_add(1, Relaxed),
        };
        let mut record = Vec::with_capacity(160 + json.map_or(0, str::len));
        match serde_json::to_writer(&mut record, &header) {
            Ok(()) => {
                if let Some(json) = json {
                    record.push(b'\n');
                    record.extend_from_slice(json.as_bytes());
                }
                self.bus.publish(vehicle, &record);
            }
            Err(e) => tracing::error!(error = %e, "cluster: output not serializable"),
        }
    }

    fn send_state(&self, state: &VehicleState, fit: Option<&TripFit>, deviated: bool, json: &str) {
        let header = Header {
            order: ORDER_UNSET,
            kind: Kind::State,
            vehicle: Cow::Borrowed(&state.vehicle),
            fit: fit.map(Cow::Borrowed),
            deviated,
            event: None,
            glance: Some(Glance {
                route: state.route.as_deref().map(Cow::Borrowed),
                trip: state.trip.as_deref().map(Cow::Borrowed),
            }),
        };
        self.send(&state.vehicle, state.ts, header, Some(json));
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
        let header = Header {
            order: ORDER_UNSET,
            kind: Kind::Event,
            vehicle: Cow::Borrowed(&event.vehicle),
            fit: None,
            deviated: false,
            event: Some(Cow::Borrowed(&**event)),
            glance: None,
        };
        self.send(&event.vehicle, event.ts, header, None);
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
        // A frame holds at most the records of the bus's linger; reused.
        let mut routed = Vec::new();
        loop {
            let next = tokio::select! {
                m = inbox.recv() => m,
                () = stop.cancelled() => return,
            };
            let Some((_, frame)) = next else { return };
            let Some(records) = others(&frame, &self.node) else {
                continue;
            };
            // The frame's messages go to the router back to back, after all of it is read:
            // the router wakes once per frame, not once per record.
            let mut lines = records.split(|&b| b == b'\n');
            while let Some(line) = lines.next() {
                if line.is_empty() {
                    continue;
                }
                if let Some(message) = self.output(line, &mut lines, &mut seen) {
                    routed.push(message);
                }
            }
            for message in routed.drain(..) {
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

    /// One record, from its header `line` (a state's JSON is the next of `lines`), into the
    /// sinks; the message for the router, `None` when stale or unreadable.
    fn output<'f>(
        &self,
        line: &'f [u8],
        lines: &mut impl Iterator<Item = &'f [u8]>,
        seen: &mut FastMap<String, Seen>,
    ) -> Option<Arc<crate::message::Message>> {
        let header: Header<'_> = match serde_json::from_slice(line) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: unreadable output on the bus; skipped");
                return None;
            }
        };
        match header.kind {
            Kind::State => {
                let json = lines.next()?;
                let first = fresh(seen, &header)?;
                let json: Arc<str> = Arc::from(std::str::from_utf8(json).ok()?);
                let vehicle: &str = &header.vehicle;
                let fit = header.fit.map(Cow::into_owned);
                let parsed: VehicleState;
                let (route, trip) = match &header.glance {
                    Some(g) => (g.route.as_deref(), g.trip.as_deref()),
                    None => {
                        // A node that does not name the route and trip: read them from the
                        // state.
                        parsed = serde_json::from_str(&json).ok()?;
                        (parsed.route.as_deref(), parsed.trip.as_deref())
                    }
                };
                if let Some(book) = &self.trips {
                    book.observe(vehicle, route, trip, Instant::now());
                }
                let state = super::deferred::Received {
                    vehicle,
                    route,
                    trip,
                    first,
                };
                self.outputs
                    .state(state, json.clone(), fit, header.deviated);
                Some(state_json_message(vehicle, json))
            }
            Kind::Event => {
                fresh(seen, &header)?;
                let event = Arc::new(header.event?.into_owned());
                if event.vehicle != header.vehicle {
                    return None;
                }
                self.outputs.event(&event);
                Some(event_message(&event))
            }
        }
    }
}

/// The records of another node's frame; `None` for this node's own (or a frame without the
/// node line).
fn others<'p>(frame: &'p [u8], me: &str) -> Option<&'p [u8]> {
    let cut = frame.iter().position(|&b| b == b'\n')?;
    (&frame[..cut] != me.as_bytes()).then(|| &frame[cut + 1..])
}

/// Whether `h`'s output is newer than what was seen of its vehicle (and records it if so):
/// `None` if not, else whether it is the first of its kind seen of the vehicle.
fn fresh(seen: &mut FastMap<String, Seen>, h: &Header<'_>) -> Option<bool> {
    let vehicle: &str = &h.vehicle;
    // One lookup for a known vehicle (every output but its first).
    let last = if let Some(last) = seen.get_mut(vehicle) {
        last
    } else {
        if seen.len() >= MAX_ORDERED_VEHICLES {
            seen.clear();
        }
        seen.entry(vehicle.to_owned()).or_default()
    };
    let slot = match h.kind {
        Kind::State => &mut last.state,
        Kind::Event => &mut last.event,
    };
    if slot.is_some_and(|s| s >= h.order) {
        return None;
    }
    Some(slot.replace(h.order).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ts: i64, seq: u64, kind: Kind) -> Header<'static> {
        Header {
            order: Order { epoch: 0, ts, seq },
            kind,
            vehicle: Cow::Borrowed("v"),
            fit: None,
            deviated: false,
            event: None,
            glance: None,
        }
    }

    #[test]
    fn duplicates_and_stale_outputs_are_dropped() {
        let mut seen = FastMap::default();
        let state = |ts, seq| header(ts, seq, Kind::State);
        assert_eq!(fresh(&mut seen, &state(10, 5)), Some(true), "the first");
        assert_eq!(fresh(&mut seen, &state(10, 5)), None, "duplicate");
        assert_eq!(fresh(&mut seen, &state(9, 99)), None, "older fix");
        assert_eq!(
            fresh(&mut seen, &state(10, 6)),
            Some(false),
            "same fix, later output"
        );
        // Another node, whose counter is far behind, with the next fix.
        assert_eq!(fresh(&mut seen, &state(11, 0)), Some(false));
        // Events are ordered apart from states.
        assert_eq!(fresh(&mut seen, &header(10, 1, Kind::Event)), Some(true));
    }

    #[test]
    fn a_node_skips_its_own_outputs_unparsed() {
        assert_eq!(others(b"a\n{}", "a"), None);
        assert_eq!(others(b"ab\n{}", "a"), Some(&b"{}"[..]));
        assert_eq!(others(b"{}", "a"), None);
    }

    #[test]
    fn the_header_round_trips_on_one_line() {
        let json = serde_json::to_vec(&header(10, 1, Kind::State)).expect("json");
        assert!(!json.contains(&b'\n'));
        let back: Header<'_> = serde_json::from_slice(&json).expect("parses");
        assert_eq!(
            back.order,
            Order {
                epoch: 0,
                ts: 10,
                seq: 1
            }
        );
        assert_eq!((back.kind, &*back.vehicle), (Kind::State, "v"));
    }
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod across;
