//! The three FULL_DATASET feeds of docs/gtfs-realtime.md, cached per second: the first request in a
//! second builds and encodes the feed (under the feed's own lock, so concurrent pollers wait for
//! that one encode instead of encoding again), every later request in the same second gets the same
//! bytes. The JSON form is made from the same message, on first demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use geo_engine::Network;
use gtfs_realtime::{FeedEntity, FeedHeader, FeedMessage, feed_header};
use prost::Message as _;

use super::entity::{detour_alert, trip_update, vehicle_position};
use super::live::LiveVehicles;

/// Which feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    VehiclePositions = 0,
    TripUpdates = 1,
    Alerts = 2,
}

impl FeedKind {
    /// The feed named by the path segment of `/gtfs-rt/{name}`.
    pub fn from_path(name: &str) -> Option<FeedKind> {
        match name {
            "vehicle-positions" => Some(FeedKind::VehiclePositions),
            "trip-updates" => Some(FeedKind::TripUpdates),
            "alerts" => Some(FeedKind::Alerts),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::VehiclePositions => "vehicle-positions",
            FeedKind::TripUpdates => "trip-updates",
            FeedKind::Alerts => "alerts",
        }
    }
}

/// A header for `entities` at `now_s` with `incrementality`.
pub fn header(timestamp: u64, incrementality: feed_header::Incrementality) -> FeedHeader {
    FeedHeader {
        gtfs_realtime_version: "2.0".into(),
        incrementality: Some(incrementality as i32),
        timestamp: Some(timestamp),
        ..FeedHeader::default()
    }
}

/// One feed's cache: the second it was built for and its encodings.
#[derive(Default)]
struct Cached {
    second: Option<i64>,
    header_ts: u64,
    message: Option<Arc<FeedMessage>>,
    protobuf: Bytes,
    json: Option<Bytes>,
}

/// The feeds, built from the live vehicles.
pub struct Feeds {
    net: Arc<Network>,
    live: Arc<LiveVehicles>,
    cache: [Mutex<Cached>; 3],
    encodes: [AtomicU64; 3],
}

impl Feeds {
    pub fn new(net: Arc<Network>, live: Arc<LiveVehicles>) -> Feeds {
        Feeds {
            net,
            live,
            cache: Default::default(),
            encodes: Default::default(),
        }
    }

    /// The feed as protobuf (or JSON), as of `now_ms` (the broker clock).
    pub fn get(&self, kind: FeedKind, json: bool, now_ms: i64) -> Bytes {
        let mut c = self.cache[kind as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let second = now_ms.div_euclid(1000);
        if c.second != Some(second) || c.message.is_none() {
            let entities = self.entities(kind);
            // Never decreasing, and never before an entity's own timestamp (a fix may be
            // stamped up to 30 s ahead of the broker clock).
            let newest = entities.iter().filter_map(entity_ts).max().unwrap_or(0);
            let ts = (second.max(0) as u64).max(c.header_ts).max(newest);
            let message = FeedMessage {
                header: header(ts, feed_header::Incrementality::FullDataset),
                entity: entities,
            };
            c.protobuf = Bytes::from(message.encode_to_vec());
            c.json = None;
            c.message = Some(Arc::new(message));
            c.second = Some(second);
            c.header_ts = ts;
            self.encodes[kind as usize].fetch_add(1, Relaxed);
        }
        if !json {
            return c.protobuf.clone();
        }
        if c.json.is_none() {
            let text = c
                .message
                .as_deref()
                .and_then(|m| serde_json::to_vec(m).ok())
                .unwrap_or_default();
            c.json = Some(Bytes::from(text));
        }
        c.json.clone().unwrap_or_default()
    }

    /// The entities of one feed, from every live vehicle.
    pub fn entities(&self, kind: FeedKind) -> Vec<FeedEntity> {
        let vehicles = self.live.snapshot();
        let net = &self.net;
        match kind {
            // A vehicle on a detour is off its trip's shape; its DETOUR alert goes beside its
            // position in the same message, as validators (and consumers matching a position to
            // its shape) look for it there.
            FeedKind::VehiclePositions => vehicles
                .iter()
                .flat_map(|v| [Some(vehicle_position(net, v)), detour_alert(net, v)])
                .flatten()
                .collect(),
            FeedKind::TripUpdates => {
                let mut out: Vec<FeedEntity> = Vec::new();
                // One TripUpdate per trip: when two vehicles claim one, the latest fix wins.
                let mut by_trip: std::collections::HashMap<String, usize> = Default::default();
                for v in &vehicles {
                    let Some(e) = trip_update(net, v) else {
                        continue;
                    };
                    match by_trip.get(&e.id) {
                        Some(&i) if entity_ts(&out[i]) >= entity_ts(&e) => {}
                        Some(&i) => out[i] = e,
                        None => {
                            by_trip.insert(e.id.clone(), out.len());
                            out.push(e);
                        }
                    }
                }
                out
            }
            FeedKind::Alerts => vehicles
                .iter()
                .filter_map(|v| detour_alert(net, v))
                .collect(),
        }
    }

    /// Times feed `kind` was encoded (for `/metrics` and the one-encode-per-second test).
    pub fn encodes(&self, kind: FeedKind) -> u64 {
        self.encodes[kind as usize].load(Relaxed)
    }
}

/// An entity's own timestamp, seconds.
fn entity_ts(e: &FeedEntity) -> Option<u64> {
    e.vehicle
        .as_ref()
        .and_then(|v| v.timestamp)
        .or_else(|| e.trip_update.as_ref().and_then(|t| t.timestamp))
}
