//! The ingest hook: location updates on `fleet/{id}/location` run through geo-engine inline,
//! and the processed state (`vehicles/{id}`, retained) and events (`events/{id}/{kind}`, QoS 1)
//! go back into the router like any other publish, and to the state sinks (the WebSocket
//! bridge, the Redis writer).
//!
//! One vehicle's updates are processed in arrival order under that vehicle's own lock;
//! different vehicles are processed in parallel on the connections' tasks, on every core.
//!
//! # Layout
//! - `topics`: which driver topics fleetmq interprets.
//! - `sink`: the [`StateSink`] interface for consumers of processed state.
//! - `source`: [`Source`], the `source` label of the ingest metrics.
//! - `gate`: [`Gate`], the way in for updates that do not come over MQTT (HTTP, OsmAnd).
//! - `slot`: what is kept of one vehicle between its updates (tracker, topic).

mod gate;
mod sink;
mod slot;
mod source;
pub mod topics;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use fleetmq_codec::{ByteString, Bytes, Properties, QoS};
use geo_engine::{
    Event, EventKind, Fix, Network, Outcome, PipelineConfig, Rejection, Tracker, VehicleState,
    parse_fixes,
};

use crate::gtfsrt::{self, Feeds, LiveVehicles};
use crate::hash::FastState;
use crate::message::{Message, Origin};
use crate::metrics::Metrics;
use fleetmq_bridge::UpcomingStops;
pub use gate::{Gate, MAX_BATCH, Refused, Taken};
pub use sink::StateSink;
use slot::VehicleSlot;
pub use source::Source;

/// Broker clock, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What an accepted update produced: messages to route.
pub type Outputs = Vec<Arc<Message>>;

/// Why a location update was refused as a whole.
#[derive(Debug)]
pub enum LocationError {
    /// Its first invalid fix (nothing valid in it).
    Invalid(Rejection),
    /// A new vehicle past `--max-vehicles` (v5 PUBACK 0x97); known vehicles are never evicted.
    VehicleQuota,
}

/// What one payload (a fix or a batch) came to.
pub struct Processed {
    /// Processed states and events to route.
    pub outputs: Outputs,
    /// Fixes that passed validation (forwarded, or dropped as duplicate or jitter).
    pub taken: usize,
    /// Fixes that validation rejected.
    pub rejected: usize,
    /// The first of them.
    pub first_rejection: Option<Rejection>,
    /// Nothing processed: a new vehicle past `--max-vehicles`.
    pub over_quota: bool,
}

pub struct Ingest {
    network: Arc<Network>,
    /// Added to the system clock (`--clock-start`): replaying traces stamped in the past.
    clock_offset_ms: i64,
    /// The live vehicles as the GTFS-Realtime feeds see them.
    live: Arc<LiveVehicles>,
    feeds: Feeds,
    /// Publish GTFS-Realtime entities over MQTT (only with timetables loaded).
    gtfsrt_mqtt: bool,
    config: PipelineConfig,
    /// One tracker per vehicle; the map's shard lock is held only to find the entry, the
    /// tracker's own mutex while one update is processed (never across an await).
    trackers: DashMap<Arc<str>, Arc<VehicleSlot>, FastState>,
    sinks: Vec<Arc<dyn StateSink>>,
    metrics: Arc<Metrics>,
    /// `--max-vehicles`: trackers made on a fix at most (restored ones always come back).
    max_vehicles: usize,
    /// `--cluster`: trackers live only on the node holding the vehicle's lease, so a restore
    /// on start publishes states without keeping trackers (see [`Ingest::adopt`]).
    leased: bool,
}

impl Ingest {
    pub fn new(
        network: Arc<Network>,
        config: PipelineConfig,
        sinks: Vec<Arc<dyn StateSink>>,
        metrics: Arc<Metrics>,
    ) -> Ingest {
        let live = Arc::new(LiveVehicles::default());
        Ingest {
            feeds: Feeds::new(network.clone(), live.clone()),
            gtfsrt_mqtt: network.schedule().is_some(),
            live,
            clock_offset_ms: 0,
            network,
            config,
            trackers: DashMap::with_hasher(FastState::default()),
            sinks,
            metrics,
            max_vehicles: usize::MAX,
            leased: false,
        }
    }

    /// `--cluster`: keeps trackers only of vehicles this node holds the lease of.
    pub fn with_leases(mut self, leased: bool) -> Ingest {
        self.leased = leased;
        self
    }

    /// A vehicle's tracker loaded from Redis when this node acquired its lease: it replaces the
    /// local one unless that one has seen a newer fix (processed while Redis was unreachable).
    pub fn adopt(&self, tracker: Tracker) {
        let newer = |t: &Tracker| t.state().map(|s| s.ts);
        match self.trackers.entry(tracker.vehicle().into()) {
            dashmap::Entry::Occupied(slot) => {
                let mut local = slot.get().lock();
                if newer(&tracker) >= newer(&local) {
                    *local = tracker;
                }
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Arc::new(VehicleSlot::new(tracker)));
            }
        }
        self.metrics
            .vehicles
            .store(self.trackers.len() as i64, Relaxed);
    }

    /// `f` of the vehicle's tracker, under the tracker's lock (and not the map's): to
    /// serialize it when its lease is given up, without copying it first. `f` must not block.
    pub fn with_tracker<R>(&self, vehicle: &str, f: impl FnOnce(&Tracker) -> R) -> Option<R> {
        let t = self.trackers.get(vehicle)?.clone();
        let tracker = t.lock();
        Some(f(&tracker))
    }

    /// Drops the vehicle's tracker: another node processes it now (lease given up or lost).
    pub fn forget(&self, vehicle: &str) {
        if self.trackers.remove(vehicle).is_some() {
            self.live.remove(vehicle);
        }
    }

    /// Runs the pipeline clock from `start_ms` (Unix ms) now, at real speed.
    pub fn with_clock_start(mut self, start_ms: Option<i64>) -> Ingest {
        self.clock_offset_ms = start_ms.map_or(0, |s| s - now_ms());
        self
    }

    /// The pipeline clock, Unix ms: the system clock, or `--clock-start` plus time since start.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.clock_offset_ms
    }

    /// The GTFS-Realtime feeds.
    pub fn feeds(&self) -> &Feeds {
        &self.feeds
    }

    /// Refuses fixes of new vehicles past `max` (`--max-vehicles`).
    pub fn with_max_vehicles(mut self, max: usize) -> Ingest {
        self.max_vehicles = max;
        self
    }

    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    pub fn vehicle_count(&self) -> usize {
        self.trackers.len()
    }

    /// The next `max` stops of `vehicle` with their ETAs ([`upcoming_stops`]); `None` for a
    /// vehicle without a tracker. Holds the vehicle's lock for one short computation.
    pub fn upcoming_stops(&self, vehicle: &str, max: usize) -> Option<UpcomingStops> {
        let t = self.trackers.get(vehicle)?.clone();
        let t = t.lock();
        Some(upcoming_stops(&t, &self.network, max))
    }

    /// Puts back a tracker restored from a snapshot (before any connection is accepted); with
    /// leases only its state (retained, the sinks' views): the tracker waits in Redis for the
    /// node that acquires the vehicle.
    pub fn restore(&self, tracker: Tracker) -> Outputs {
        let vehicle: Arc<str> = tracker.vehicle().into();
        let out = tracker
            .state()
            .map(|s| vec![state_message(s)])
            .unwrap_or_default();
        if let Some(s) = tracker.state() {
            let s = Arc::new(s.clone());
            for sink in &self.sinks {
                sink.restored(&s);
            }
        }
        if !self.leased {
            self.trackers
                .insert(vehicle, Arc::new(VehicleSlot::new(tracker)));
        }
        out
    }

    /// Puts back a tracker restored late (Redis came back after start) unless this broker has
    /// seen the vehicle since start: what it computed since is newer. `None` when skipped.
    pub fn restore_unseen(&self, tracker: Tracker) -> Option<Outputs> {
        if self.leased {
            return (!self.trackers.contains_key(tracker.vehicle())).then(|| self.restore(tracker));
        }
        let vehicle: Arc<str> = tracker.vehicle().into();
        let dashmap::Entry::Vacant(slot) = self.trackers.entry(vehicle) else {
            return None;
        };
        let state = tracker.state().map(|s| Arc::new(s.clone()));
        slot.insert(Arc::new(VehicleSlot::new(tracker)));
        let out = state.as_deref().map(state_message).into_iter().collect();
        if let Some(s) = &state {
            for sink in &self.sinks {
                sink.restored(s);
            }
        }
        Some(out)
    }

    /// The vehicle's tracker, made on its first fix while there is room for one more.
    fn tracker(&self, vehicle: &str) -> Option<Arc<VehicleSlot>> {
        if let Some(t) = self.trackers.get(vehicle) {
            return Some(t.clone());
        }
        // Concurrent first fixes may overshoot by the number of cores at most.
        if self.trackers.len() >= self.max_vehicles {
            self.metrics.vehicles_refused.fetch_add(1, Relaxed);
            return None;
        }
        let t = self
            .trackers
            .entry(vehicle.into())
            .or_insert_with(|| Arc::new(VehicleSlot::new(Tracker::new(vehicle))))
            .clone();
        self.metrics
            .vehicles
            .store(self.trackers.len() as i64, Relaxed);
        Some(t)
    }

    /// Processes one location payload (an object or a batch) for `vehicle`.
    ///
    /// # Errors
    /// The first rejected fix; fixes of a batch before and after it are still processed.
    pub fn location(
        &self,
        vehicle: &str,
        payload: &[u8],
        received: Instant,
        source: Source,
    ) -> Result<Outputs, LocationError> {
        let fixes = self
            .parse(payload, source)
            .map_err(LocationError::Invalid)?;
        let done = self.process(vehicle, fixes, received, source);
        match done.first_rejection {
            _ if done.over_quota => Err(LocationError::VehicleQuota),
            Some(r) if done.outputs.is_empty() => Err(LocationError::Invalid(r)),
            _ => Ok(done.outputs),
        }
    }

    /// Parses a docs/topics-and-payloads.md#location-updates payload, counting a rejection under
    /// `source`.
    ///
    /// # Errors
    /// The payload's first problem, naming the field.
    pub fn parse(&self, payload: &[u8], source: Source) -> Result<Vec<Fix>, Rejection> {
        parse_fixes(payload).inspect_err(|r| self.metrics.reject(source, r.reason.as_str()))
    }

    /// Runs parsed fixes of `vehicle` (in `ts` order) through the pipeline.
    pub fn process(
        &self,
        vehicle: &str,
        fixes: Vec<Fix>,
        received: Instant,
        source: Source,
    ) -> Processed {
        let now = self.now_ms();
        let Some(tracker) = self.tracker(vehicle) else {
            return Processed {
                outputs: Vec::new(),
                taken: 0,
                rejected: fixes.len(),
                first_rejection: None,
                over_quota: true,
            };
        };
        let mut outputs = Vec::new();
        let mut first_rejection = None;
        let (mut taken, mut rejected) = (0, 0);
        let mut forwarded = Vec::new();
        {
            let mut t = tracker.lock();
            for fix in fixes {
                match t.process(&self.network, &self.config, fix, now) {
                    Ok(outcome) => {
                        taken += 1;
                        match outcome {
                            Outcome::Forwarded { mut state, events } => {
                                self.metrics.accepted(source);
                                state.processed_at = self.now_ms();
                                // Made once, here: the payload's, and the tracker snapshot
                                // below embeds the last one.
                                let json = state_json(&state);
                                forwarded.push(Forwarded {
                                    state,
                                    events,
                                    fit: t.trip_fit().cloned(),
                                    deviated: t.is_deviated(),
                                    json,
                                });
                            }
                            Outcome::Duplicate => self.metrics.duplicate(source),
                            Outcome::Jitter => self.metrics.jitter(source),
                        }
                    }
                    Err(r) => {
                        rejected += 1;
                        self.metrics.reject(source, r.reason.as_str());
                        first_rejection.get_or_insert(r);
                    }
                }
            }
            // The last state is the tracker's own: its snapshot embeds that JSON as is.
            if let Some(last) = forwarded.last() {
                for sink in &self.sinks {
                    sink.snapshot(&t, &last.json);
                }
            }
        }
        for Forwarded {
            state,
            events,
            fit,
            deviated,
            json,
        } in forwarded
        {
            for e in events {
                outputs.push(event_message(&e));
                let e = Arc::new(e);
                for sink in &self.sinks {
                    sink.event(&e);
                }
            }
            outputs.push(state_topic_message(tracker.state_topic(), json.clone()));
            let state = Arc::new(state);
            for sink in &self.sinks {
                sink.fitted_state(&state, fit.as_ref(), deviated, &json);
            }
            let (live, prev) = self.live.update(state, fit, deviated);
            if self.gtfsrt_mqtt {
                outputs.extend(gtfsrt::changed_messages(
                    &self.network,
                    &live,
                    prev.as_deref(),
                ));
            }
        }
        self.metrics
            .observe_latency(received.elapsed().as_secs_f64());
        Processed {
            outputs,
            taken,
            rejected,
            first_rejection,
            over_quota: false,
        }
    }

    /// The GTFS-Realtime live set.
    pub fn live(&self) -> &LiveVehicles {
        &self.live
    }

    /// Another node's processed state of a vehicle (cluster), into the GTFS-Realtime live set.
    pub fn remote_state(
        &self,
        state: Arc<VehicleState>,
        fit: Option<geo_engine::schedule::TripFit>,
        deviated: bool,
    ) {
        if state.status == geo_engine::VehicleStatus::Offline {
            self.live.remove(&state.vehicle);
        } else {
            self.live.update(state, fit, deviated);
        }
    }

    /// The vehicles a driver connection published for went away: each goes offline.
    pub fn disconnected<'a>(&self, vehicles: impl IntoIterator<Item = &'a str>) -> Outputs {
        let now = self.now_ms();
        let mut out = Vec::new();
        for v in vehicles {
            let Some(t) = self.trackers.get(v).map(|t| t.clone()) else {
                continue;
            };
            let went = t.lock().mark_offline(now);
            if let Some((state, event)) = went {
                out.extend(self.offline(state, event));
            }
        }
        out
    }

    /// Vehicles with no fix for `stale_after` go offline.
    pub fn sweep(&self) -> Outputs {
        let now = self.now_ms();
        // Restored trackers are counted here too.
        self.metrics
            .vehicles
            .store(self.trackers.len() as i64, Relaxed);
        let trackers: Vec<Arc<VehicleSlot>> =
            self.trackers.iter().map(|e| e.value().clone()).collect();
        let mut out = Vec::new();
        for t in trackers {
            let went = t.lock().check_stale_on(&self.network, &self.config, now);
            if let Some((state, event)) = went {
                out.extend(self.offline(state, event));
            }
        }
        out
    }

    fn offline(&self, state: VehicleState, event: Event) -> Outputs {
        self.live.remove(&state.vehicle);
        let (message, json) = state_message_and_json(&state);
        let out = vec![event_message(&event), message];
        let (state, event) = (Arc::new(state), Arc::new(event));
        for sink in &self.sinks {
            sink.event(&event);
            sink.state_json(&state, &json);
        }
        out
    }

    /// An SOS from a driver: the `events/{id}/sos` message. Its persistence before publication
    /// is the caller's business.
    pub fn sos(&self, vehicle: &str, payload: &[u8]) -> Arc<Message> {
        let tracker = self.trackers.get(vehicle).map(|t| t.clone());
        let (lat, lon) = tracker
            .and_then(|t| t.lock().state().map(|s| (s.lat, s.lon)))
            .unwrap_or((0.0, 0.0));
        let text = std::str::from_utf8(payload)
            .ok()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let event = Event {
            kind: geo_engine::EventKind::Sos,
            vehicle: vehicle.to_owned(),
            ts: self.now_ms(),
            lat,
            lon,
            route: None,
            trip: None,
            stop_id: None,
            stop_name: None,
            geofence_id: None,
            off_route_m: None,
            message: text,
        };
        let msg = event_message(&event);
        let event = Arc::new(event);
        for sink in &self.sinks {
            sink.event(&event);
        }
        msg
    }
}

/// UTF-8 JSON: the properties of every message the broker makes, shared by all of them.
static JSON_PROPERTIES: LazyLock<Arc<Properties>> = LazyLock::new(|| {
    Arc::new(Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        ..Properties::default()
    })
});

fn broker_message(
    topic: impl Into<ByteString>,
    payload: Bytes,
    qos: QoS,
    retain: bool,
) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload,
        qos,
        retain,
        properties: Some(JSON_PROPERTIES.clone()),
        expires_at: None,
        origin: Origin::Broker,
    })
}

/// `parts` joined in a string of exactly their length: a topic made per output becomes the
/// message's `Bytes`, which take a full buffer as it is but allocate a second block to share
/// one with spare capacity (`format!` leaves some, and costs its formatting machinery besides).
fn concat_exact(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// A processed state's JSON is about 300–500 bytes (at most a few KiB: ids are ≤ 256 bytes).
const STATE_JSON_CAPACITY: usize = 512;

thread_local! {
    /// The buffer each thread serializes states into, reused: the text is then copied once
    /// into its shared `Arc<str>` (no per-state buffer allocation or regrowth).
    static STATE_JSON_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(STATE_JSON_CAPACITY));
}

/// `tracker`'s next `max` stops ([`Tracker::upcoming_stops`]) with the route and trip of its
/// latest state, which they are of.
pub fn upcoming_stops(tracker: &Tracker, net: &Network, max: usize) -> UpcomingStops {
    let state = tracker.state();
    UpcomingStops {
        route: state.and_then(|s| s.route.clone()),
        trip: state.and_then(|s| s.trip.clone()),
        stops: tracker.upcoming_stops(net, max),
    }
}

/// `vehicles/{id}`, retained.
pub fn state_message(state: &VehicleState) -> Arc<Message> {
    state_message_and_json(state).0
}

/// The state's JSON text (`VehicleState::write_json`, the bytes of its `Serialize`).
fn state_json(state: &VehicleState) -> Arc<str> {
    STATE_JSON_BUF.with_borrow_mut(|buf| {
        buf.clear();
        state.write_json(buf);
        // Valid UTF-8 by construction (JSON of `str`s); an empty payload rather than a panic.
        let json = std::str::from_utf8(buf).map_or_else(|_| Arc::from(""), Arc::from);
        // A state with unusually long ids does not keep a large buffer on the thread.
        if buf.capacity() > 8 * STATE_JSON_CAPACITY {
            *buf = Vec::with_capacity(STATE_JSON_CAPACITY);
        }
        json
    })
}

/// A state a fix produced, with its JSON (made once, under the tracker's lock) and what goes
/// out beside it.
struct Forwarded {
    state: VehicleState,
    events: Vec<Event>,
    fit: Option<geo_engine::schedule::TripFit>,
    deviated: bool,
    json: Arc<str>,
}

/// `vehicles/{id}` and its payload as text: one serialization shared by the MQTT message and
/// the sinks ([`StateSink::state_json`]), without copying it.
fn state_message_and_json(state: &VehicleState) -> (Arc<Message>, Arc<str>) {
    let json = state_json(state);
    (state_json_message(&state.vehicle, json.clone()), json)
}

/// `vehicles/{vehicle}`, retained, with `json` (the state's serialization, made by this node or
/// received from another) as the payload, not copied.
pub fn state_json_message(vehicle: &str, json: Arc<str>) -> Arc<Message> {
    state_topic_message(state_topic(vehicle), json)
}

/// `vehicles/{vehicle}`, shared (see [`slot`]): kept per vehicle by whoever makes its states.
pub fn state_topic(vehicle: &str) -> ByteString {
    let topic = ByteString::from(concat_exact(&["vehicles/", vehicle]));
    // The first clone makes the bytes shared (one allocation here, once); a clone of the
    // clone is a reference count.
    topic.clone()
}

/// A state message on `topic` (`vehicles/{id}`, from [`state_topic`]) with `json` as payload.
pub fn state_topic_message(topic: ByteString, json: Arc<str>) -> Arc<Message> {
    broker_message(
        topic,
        Bytes::from_owner(JsonBytes(json)),
        QoS::AtMostOnce,
        true,
    )
}

/// Shared JSON text as the bytes of a message payload.
struct JsonBytes(Arc<str>);

impl AsRef<[u8]> for JsonBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// `events/{id}/{kind}`, QoS 1.
pub fn event_message(event: &Event) -> Arc<Message> {
    let payload = serde_json::to_vec(event).unwrap_or_default();
    event_json_message(&event.vehicle, event.kind, Bytes::from(payload))
}

/// `events/{vehicle}/{kind}`, QoS 1, with `json` (the event's serialization, made by this node
/// or received from another) as the payload.
pub fn event_json_message(vehicle: &str, kind: EventKind, json: Bytes) -> Arc<Message> {
    broker_message(
        concat_exact(&["events/", vehicle, "/", kind.as_str()]),
        json,
        QoS::AtLeastOnce,
        false,
    )
}

#[cfg(test)]
mod tests {
    use geo_engine::{NextStop, VehicleStatus};

    use super::*;

    #[test]
    fn topics_are_made_to_their_exact_length() {
        let topic = concat_exact(&["events/", "bus-é", "/", EventKind::Online.as_str()]);
        assert_eq!(topic, "events/bus-é/online");
        assert_eq!(topic.capacity(), topic.len());
        let message = state_json_message("bus-1", Arc::from("{}"));
        assert_eq!(&*message.topic, "vehicles/bus-1");
    }

    #[test]
    fn the_shared_state_json_is_the_payload_and_the_plain_serialization() {
        let state = VehicleState {
            vehicle: "bus-\"12\"".into(),
            lat: -16.92,
            lon: 145.77,
            raw_lat: -16.921,
            raw_lon: 145.771,
            ts: 1_763_700_000_000,
            speed: Some(8.5),
            heading: Some(90.0),
            route: Some("110".into()),
            trip: Some("t-1".repeat(1500).into()),
            status: VehicleStatus::Moving,
            on_route: Some(true),
            off_route_m: None,
            progress_m: Some(1234.5),
            next_stop: Some(NextStop {
                id: "s1".into(),
                name: "Main St \u{e9}".into(),
                distance_m: 120.0,
                eta: Some(1_763_700_060_000),
                scheduled: None,
                delay_s: None,
            }),
            delay_s: None,
            trip_inferred: None,
            altitude: None,
            battery: None,
            accuracy: None,
            received_at: 1_763_700_000_050,
            processed_at: 1_763_700_000_051,
        };
        let (message, json) = state_message_and_json(&state);
        let plain = serde_json::to_string(&state).unwrap_or_default();
        assert!(
            plain.len() > 8 * STATE_JSON_CAPACITY,
            "a state that outgrows the buffer"
        );
        assert_eq!(&*json, plain);
        assert_eq!(&message.payload[..], plain.as_bytes());
        assert_eq!(&*message.topic, "vehicles/bus-\"12\"");
        assert!(message.retain);
    }
}
