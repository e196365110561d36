//! The write-behind buffer: per vehicle, the latest state, the latest tracker snapshot and the
//! track points not yet written, in bounded memory.
//!
//! Callers are the ingest path (through [`super::RedisSink`]), so every operation takes one
//! shard's mutex for a few map operations and never blocks on I/O. The writer swaps a whole
//! shard out in O(1) ([`Pending::take`]) and serialises outside the lock.
//!
//! # Bounds
//! - At most `max_vehicles` vehicles are buffered. When full, updates of vehicles already
//!   buffered still replace their entry (latest wins); a vehicle not yet buffered is dropped and
//!   counted in `dropped` (its next update after a flush gets in again). A batch put back after a
//!   failed write is never dropped, so for a moment the count can reach twice the bound; while
//!   Redis is known to be down the writer takes nothing, so this happens once per outage.
//! - At most [`TRACK_PER_VEHICLE`] track points per vehicle (oldest dropped first) and at most
//!   `track_budget` in all; over the budget a vehicle keeps only its newest point.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use geo_engine::{Tracker, VehicleState};

use crate::hash::{FastMap, FastState};

/// Shards of the map, so connections on different cores rarely contend.
const SHARDS: usize = 16;
/// Track points buffered per vehicle while Redis is slow or down.
pub const TRACK_PER_VEHICLE: usize = 32;
/// First capacity of a tracker snapshot's buffer, bytes: ~350 of fields and the state's ~460
/// of JSON (`geo_engine::tracker::snapshot`).
const TRACKER_SNAPSHOT_CAPACITY: usize = 1024;

/// A processed state and its JSON: the `vehicles/{id}` payload's bytes, made once by ingest and
/// shared (`HSET state`, `XADD`), so the writer serializes no state.
#[derive(Debug, Clone)]
pub struct StateJson {
    pub state: Arc<VehicleState>,
    pub json: Arc<str>,
}

impl StateJson {
    /// A state whose JSON nobody made yet: serialized here.
    pub fn new(state: Arc<VehicleState>) -> StateJson {
        let mut json = Vec::with_capacity(512);
        state.write_json(&mut json);
        // `write_json` writes JSON: UTF-8 by construction.
        let json = String::from_utf8(json).unwrap_or_default().into();
        StateJson { state, json }
    }
}

/// What is waiting to be written for one vehicle.
#[derive(Debug, Default)]
pub struct Entry {
    /// Latest processed state (`HSET state`, `GEOADD`).
    pub state: Option<StateJson>,
    /// Latest tracker snapshot (`HSET tracker`, binary: `geo_engine::tracker::snapshot`);
    /// absent when only the state changed (offline). Serialized when taken, not cloned: the
    /// writer would serialize the clone anyway, and a clone and its drop per update cost more
    /// than the snapshot's bytes.
    pub tracker: Option<Vec<u8>>,
    /// Processed fixes for the track stream, oldest first.
    pub track: Vec<StateJson>,
    /// With `--cluster`: the lease epoch the latest state/tracker was computed under (the hash
    /// write is fenced with it); `None` when this node did not hold the vehicle.
    pub epoch: Option<u64>,
}

/// One batch taken for writing: vehicle id → entry.
pub type Batch = FastMap<Arc<str>, Entry>;

/// The bounded, sharded, latest-wins buffer.
pub struct Pending {
    shards: Vec<Mutex<Batch>>,
    /// Picks a vehicle's shard (seeded, as every map keyed by vehicle: [`crate::hash`]).
    hasher: FastState,
    /// Vehicles buffered now (all shards).
    vehicles: AtomicUsize,
    /// Track points buffered now (all shards).
    track_points: AtomicUsize,
    max_vehicles: usize,
    track_budget: usize,
    /// Updates dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Number of the batch the next [`Pending::take`] returns minus one: every take adds one
    /// before it swaps the shards out (see [`Pending::mark`]).
    taken: AtomicU64,
}

impl Pending {
    /// An empty buffer for at most `max_vehicles` vehicles and `track_budget` track points.
    pub fn new(max_vehicles: usize, track_budget: usize) -> Pending {
        Pending {
            shards: (0..SHARDS).map(|_| Mutex::new(Batch::default())).collect(),
            hasher: FastState::default(),
            vehicles: AtomicUsize::new(0),
            track_points: AtomicUsize::new(0),
            max_vehicles,
            track_budget,
            dropped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// Vehicles waiting to be written.
    pub fn len(&self) -> usize {
        self.vehicles.load(Relaxed)
    }

    fn shard(&self, vehicle: &str) -> &Mutex<Batch> {
        let i = (self.hasher.hash_one(vehicle) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Runs `f` on the vehicle's entry, creating it if there is room; false when full.
    fn with_entry(&self, vehicle: &str, f: impl FnOnce(&mut Entry, &Pending)) -> bool {
        let mut shard = self
            .shard(vehicle)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = shard.get_mut(vehicle) {
            f(entry, self);
            return true;
        }
        if self.vehicles.load(Relaxed) >= self.max_vehicles {
            self.dropped.fetch_add(1, Relaxed);
            return false;
        }
        self.vehicles.fetch_add(1, Relaxed);
        let entry = shard.entry(vehicle.into()).or_default();
        f(entry, self);
        true
    }

    /// A new processed state with its JSON: replaces the latest and, unless it is an offline
    /// mark (which is not a fix), joins the track.
    pub fn state(&self, state: StateJson, epoch: Option<u64>) {
        let is_fix = state.state.status != geo_engine::VehicleStatus::Offline;
        let vehicle = state.state.clone();
        self.with_entry(&vehicle.vehicle, |e, p| {
            if is_fix {
                p.push_track(e, state.clone());
            }
            e.state = Some(state);
            e.epoch = epoch;
        });
    }

    /// A tracker snapshot with its state's JSON: replaces the latest. Serialized here, outside
    /// the shard's lock.
    pub fn snapshot(&self, tracker: &Tracker, state_json: &str, epoch: Option<u64>) {
        let mut bytes = Vec::with_capacity(TRACKER_SNAPSHOT_CAPACITY);
        if let Err(e) = tracker.write_snapshot(&mut bytes, state_json.as_bytes()) {
            tracing::error!(error = %e, "redis: tracker not serializable");
            return;
        }
        self.with_entry(tracker.vehicle(), |e, _| {
            e.tracker = Some(bytes);
            e.epoch = epoch;
        });
    }

    /// The number of the batch that will hold everything buffered so far: once the writer
    /// has written batch `mark()` (or a later one), it is in Redis. The count goes up before a
    /// take swaps any shard out, so an entry buffered before this call is in that batch or an
    /// earlier one, never a later one.
    pub fn mark(&self) -> u64 {
        self.taken.load(SeqCst) + 1
    }

    fn push_track(&self, e: &mut Entry, point: StateJson) {
        let over_budget = self.track_points.load(Relaxed) >= self.track_budget;
        if e.track.len() >= TRACK_PER_VEHICLE || (over_budget && !e.track.is_empty()) {
            let n = if over_budget { e.track.len() } else { 1 };
            e.track.drain(..n);
            self.track_points.fetch_sub(n, Relaxed);
            self.dropped.fetch_add(n as u64, Relaxed);
        }
        e.track.push(point);
        self.track_points.fetch_add(1, Relaxed);
    }

    /// Takes everything buffered, leaving the buffer empty.
    pub fn take(&self) -> (u64, Batch) {
        let number = self.taken.fetch_add(1, SeqCst) + 1;
        let mut shards = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let taken = {
                let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
                // As large as the last batch: a shard refilled at a steady rate does not grow
                // its table again from nothing after every flush.
                let size = shard.len();
                let empty = Batch::with_capacity_and_hasher(size, FastState::default());
                std::mem::replace(&mut *shard, empty)
            };
            self.account_removed(&taken);
            shards.push(taken);
        }
        // One table of the whole size: extending shard by shard grew it (and rehashed) again.
        let mut all = Batch::with_capacity_and_hasher(
            shards.iter().map(Batch::len).sum(),
            FastState::default(),
        );
        for taken in shards {
            all.extend(taken);
        }
        (number, all)
    }

    fn account_removed(&self, batch: &Batch) {
        let points: usize = batch.values().map(|e| e.track.len()).sum();
        self.vehicles.fetch_sub(batch.len(), Relaxed);
        self.track_points.fetch_sub(points, Relaxed);
    }

    /// Puts back entries a failed write did not store. What arrived meanwhile is newer and wins;
    /// the old track points go before the new ones (within the per-vehicle bound).
    pub fn put_back(&self, batch: Batch) {
        for (vehicle, old) in batch {
            let mut shard = self
                .shard(&vehicle)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match shard.get_mut(&vehicle) {
                Some(new) => {
                    new.state = new.state.take().or(old.state);
                    new.tracker = new.tracker.take().or(old.tracker);
                    new.epoch = new.epoch.or(old.epoch);
                    let mut track = old.track;
                    let added = track.len();
                    track.append(&mut new.track);
                    let excess = track.len().saturating_sub(TRACK_PER_VEHICLE);
                    track.drain(..excess);
                    new.track = track;
                    // `new.track` held at most TRACK_PER_VEHICLE points, so excess <= added.
                    self.track_points
                        .fetch_add(added.saturating_sub(excess), Relaxed);
                    self.dropped.fetch_add(excess as u64, Relaxed);
                }
                // Put back even when full: these entries were counted before they were taken.
                None => {
                    self.vehicles.fetch_add(1, Relaxed);
                    self.track_points.fetch_add(old.track.len(), Relaxed);
                    shard.insert(vehicle, old);
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use geo_engine::VehicleStatus;

    /// A state of `vehicle` at `ts` with only the required fields (also the writer's tests').
    pub(in crate::persist) fn state(
        vehicle: &str,
        ts: i64,
        status: VehicleStatus,
    ) -> Arc<VehicleState> {
        Arc::new(VehicleState {
            vehicle: vehicle.into(),
            lat: -16.92,
            lon: 145.77,
            raw_lat: -16.92,
            raw_lon: 145.77,
            ts,
            speed: None,
            heading: None,
            route: None,
            trip: None,
            status,
            on_route: None,
            off_route_m: None,
            progress_m: None,
            next_stop: None,
            delay_s: None,
            trip_inferred: None,
            accuracy: None,
            altitude: None,
            battery: None,
            received_at: ts,
            processed_at: ts,
        })
    }

    #[test]
    fn latest_wins_and_track_keeps_fixes_only() {
        let p = Pending::new(10, 100);
        p.state(StateJson::new(state("a", 1, VehicleStatus::Moving)), None);
        p.state(StateJson::new(state("a", 2, VehicleStatus::Moving)), None);
        p.state(StateJson::new(state("a", 2, VehicleStatus::Offline)), None);
        assert_eq!(p.len(), 1);
        let (_, b) = p.take();
        let e = &b["a"];
        assert_eq!(
            e.state.as_ref().map(|s| s.state.status),
            Some(VehicleStatus::Offline)
        );
        assert_eq!(
            e.track.iter().map(|s| s.state.ts).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(p.len(), 0);
        assert_eq!(p.track_points.load(Relaxed), 0);
    }

    #[test]
    fn full_buffer_drops_new_vehicles_but_updates_known_ones() {
        let p = Pending::new(2, 100);
        p.state(StateJson::new(state("a", 1, VehicleStatus::Moving)), None);
        p.state(StateJson::new(state("b", 1, VehicleStatus::Moving)), None);
        p.state(StateJson::new(state("c", 1, VehicleStatus::Moving)), None);
        p.state(StateJson::new(state("a", 5, VehicleStatus::Moving)), None);
        assert_eq!(p.len(), 2);
        assert_eq!(p.dropped.load(Relaxed), 1);
        let (_, b) = p.take();
        assert!(!b.contains_key("c"));
        assert_eq!(b["a"].state.as_ref().map(|s| s.state.ts), Some(5));
    }

    #[test]
    fn track_is_bounded_per_vehicle_and_in_all() {
        let p = Pending::new(10, 40);
        for ts in 0..100 {
            p.state(StateJson::new(state("a", ts, VehicleStatus::Moving)), None);
        }
        assert_eq!(p.track_points.load(Relaxed), TRACK_PER_VEHICLE);
        for ts in 0..100 {
            p.state(StateJson::new(state("b", ts, VehicleStatus::Moving)), None);
        }
        assert!(p.track_points.load(Relaxed) <= 40 + 1);
        let (_, b) = p.take();
        assert_eq!(b["a"].track.last().map(|s| s.state.ts), Some(99));
        assert_eq!(b["b"].track.last().map(|s| s.state.ts), Some(99));
    }

    #[test]
    fn put_back_keeps_newer_and_orders_track() {
        let p = Pending::new(10, 1000);
        p.state(StateJson::new(state("a", 1, VehicleStatus::Moving)), None);
        let (_, old) = p.take();
        p.state(StateJson::new(state("a", 2, VehicleStatus::Moving)), None);
        p.put_back(old);
        assert_eq!(p.len(), 1);
        assert_eq!(p.track_points.load(Relaxed), 2);
        let (_, b) = p.take();
        assert_eq!(b["a"].state.as_ref().map(|s| s.state.ts), Some(2));
        assert_eq!(
            b["a"].track.iter().map(|s| s.state.ts).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
