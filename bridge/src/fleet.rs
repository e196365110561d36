//! The latest state of every vehicle, a bounded track ring per vehicle (see `track`) and a grid index over
//! positions, sharded so that pushes of different vehicles rarely contend.
//!
//! Owned by the [`Hub`](crate::Hub); REST queries and subscription snapshots read it.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use geo_engine::local::haversine_m;
use geo_engine::{Point, VehicleState, VehicleStatus};

use crate::filter::Criteria;
use crate::grid::{Bbox, Cell, Grid};
use crate::port::Access;
use crate::slots::VehicleIdx;
use crate::track::{Ring, TrackLimits, TrackPoint};

/// The maps' hasher: foldhash, randomly seeded (vehicle ids are client-chosen), instead of
/// SipHash; every state's upsert hashes its id three times (shard, map, cell).
type RandomState = foldhash::fast::RandomState;

/// Number of shards: a power of two comfortably above the core count of the machines we run on.
const SHARDS: usize = 16;
/// A bbox query covering more cells than this scans every vehicle instead.
const MAX_QUERY_CELLS: usize = 4096;

/// A state plus its JSON, serialized at most once however many clients receive it.
#[derive(Debug)]
pub struct Prepared {
    /// The state as the broker pushed it.
    pub state: Arc<VehicleState>,
    json: OnceLock<Arc<str>>,
}

impl Prepared {
    /// Wraps a state; its JSON is made on first use.
    pub fn new(state: Arc<VehicleState>) -> Prepared {
        Prepared {
            state,
            json: OnceLock::new(),
        }
    }

    /// Wraps a state with its JSON, already made by the caller (`json` must be the state's
    /// serialization, as [`Prepared::json`] would make it).
    pub fn with_json(state: Arc<VehicleState>, json: Arc<str>) -> Prepared {
        Prepared {
            state,
            json: OnceLock::from(json),
        }
    }

    /// The state's docs/topics-and-payloads.md#processed-state JSON.
    pub fn json(&self) -> &Arc<str> {
        self.json.get_or_init(|| to_json(&*self.state))
    }
}

/// Serializes a value; our state and event types cannot fail to serialize, but if one ever did we
/// would rather send `null` than panic on the delivery path.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Arc<str> {
    serde_json::to_string(v)
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from("null"))
}

/// One vehicle's entry.
struct Entry {
    /// The map key, shared with the cell index.
    id: Arc<str>,
    /// The vehicle's index: dense from 0 in order of arrival (`slots`).
    idx: VehicleIdx,
    latest: Arc<Prepared>,
    track: Ring,
    cell: Cell,
    /// When the latest state came in: a vehicle's fix time is the device's clock, which may
    /// be anything; silence is measured on ours.
    updated: Instant,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry, RandomState>,
    /// Vehicle ids per grid cell (of this shard's vehicles only).
    cells: HashMap<Cell, HashSet<Arc<str>, RandomState>, RandomState>,
}

/// The hub already holds its maximum number of vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A distance query for [`Fleet::select`].
#[derive(Debug, Clone, Copy)]
pub struct Near {
    /// Centre, degrees.
    pub lat: f64,
    /// Centre, degrees.
    pub lon: f64,
    /// Only vehicles within this many metres, if given.
    pub radius_m: Option<f64>,
}

impl Near {
    /// The centre (x = lon, y = lat).
    fn centre(&self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }
}

/// Latest states, tracks and the position index.
pub struct Fleet {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    grid: Grid,
    track: TrackLimits,
    max_vehicles: usize,
    count: AtomicUsize,
}

impl Fleet {
    /// An empty fleet.
    /// An empty fleet; each vehicle keeps `track_capacity` track points, all together at most
    /// `track_budget`.
    pub fn new(
        grid: Grid,
        track_capacity: usize,
        track_budget: usize,
        max_vehicles: usize,
    ) -> Fleet {
        Fleet {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: RandomState::default(),
            grid,
            track: TrackLimits {
                capacity: track_capacity,
                budget: track_budget,
                held: AtomicUsize::new(0),
            },
            max_vehicles,
            count: AtomicUsize::new(0),
        }
    }

    fn shard(&self, vehicle: &str) -> &RwLock<Shard> {
        let i = (self.hasher.hash_one(vehicle) as usize) % SHARDS;
        &self.shards[i]
    }

    fn read(lock: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
        // No code panics while holding these locks, so poisoning cannot carry a broken invariant.
        lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        lock.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of vehicles.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Records a new latest state; returns the previous one and the vehicle's interned id (one
    /// `Arc` per vehicle for the fleet's life: vehicles are never removed).
    ///
    /// # Errors
    /// [`Full`] when the vehicle is new and the fleet is at `max_vehicles`.
    pub fn upsert(&self, p: &Arc<Prepared>) -> Result<(Option<Arc<Prepared>>, VehicleIdx), Full> {
        let s = &p.state;
        let cell = self.grid.cell(s.lat, s.lon);
        let mut shard = Self::write(self.shard(&s.vehicle));
        let shard = &mut *shard;
        if let Some(e) = shard.map.get_mut(&*s.vehicle) {
            let prev = std::mem::replace(&mut e.latest, p.clone());
            e.updated = Instant::now();
            e.track.push(TrackPoint::from(&**s), &self.track);
            if e.cell != cell {
                let id = e.id.clone();
                remove_from_cell(&mut shard.cells, e.cell, &s.vehicle);
                shard.cells.entry(cell).or_default().insert(id);
                e.cell = cell;
            }
            return Ok((Some(prev), e.idx));
        }
        // A new vehicle: reserve a place first so that concurrent inserts cannot overshoot.
        // The count before is the vehicle's index: each successful reservation takes the next
        // one (a refused one gives its increment back before any other can succeed, since the
        // count stays at or over the bound meanwhile), and vehicles are never removed.
        // An index past `VehicleIdx` counts as over the bound too, and gives its place back.
        let reserved = self.count.fetch_add(1, Ordering::Relaxed);
        let Some(idx) = (reserved < self.max_vehicles)
            .then(|| VehicleIdx::try_from(reserved).ok())
            .flatten()
        else {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        };
        let id: Arc<str> = s.vehicle.clone();
        let mut track = Ring::default();
        track.push(TrackPoint::from(&**s), &self.track);
        shard.cells.entry(cell).or_default().insert(id.clone());
        shard.map.insert(
            id.clone(),
            Entry {
                id: id.clone(),
                idx,
                latest: p.clone(),
                track,
                cell,
                updated: Instant::now(),
            },
        );
        Ok((None, idx))
    }

    /// Vehicles not offline whose latest state came in longer than `silent_for` ago.
    pub fn silent_for(&self, silent_for: Duration) -> Vec<Arc<str>> {
        let Some(before) = Instant::now().checked_sub(silent_for) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for lock in self.shards.iter() {
            let shard = Self::read(lock);
            out.extend(
                shard
                    .map
                    .values()
                    .filter(|e| e.latest.state.status != VehicleStatus::Offline)
                    .filter(|e| e.updated < before)
                    .map(|e| e.id.clone()),
            );
        }
        out
    }

    /// The latest state of a vehicle.
    pub fn get(&self, vehicle: &str) -> Option<Arc<Prepared>> {
        Self::read(self.shard(vehicle))
            .map
            .get(vehicle)
            .map(|e| e.latest.clone())
    }

    /// The vehicle's track points with `from <= ts <= to`, oldest first, at most `max` (the most
    /// recent ones); `None` for an unknown vehicle.
    pub fn track(&self, vehicle: &str, from: i64, to: i64, max: usize) -> Option<Vec<TrackPoint>> {
        Some(
            Self::read(self.shard(vehicle))
                .map
                .get(vehicle)?
                .track
                .range(from, to, max),
        )
    }

    /// States matching `criteria` that `access` (if any) may read: nearest first with `near` (only those within its radius), else
    /// by vehicle id; at most `limit`. An area query (near, bbox) finds live vehicles only: an
    /// offline one (no fix for `stale_after`) is no longer where it was last seen.
    pub fn select(
        &self,
        criteria: &Criteria,
        near: Option<Near>,
        limit: usize,
        access: Option<&dyn Access>,
    ) -> Vec<Arc<Prepared>> {
        let by_area = near.is_some() || criteria.bbox.is_some();
        self.select_where(criteria, near, limit, access, by_area)
    }

    /// [`Fleet::select`] for a live view (a subscription's snapshot): offline vehicles are kept
    /// (with `"status":"offline"`) so a map shows them as such, whatever the criteria.
    pub fn select_all(
        &self,
        criteria: &Criteria,
        access: Option<&dyn Access>,
    ) -> Vec<Arc<Prepared>> {
        self.select_where(criteria, None, usize::MAX, access, false)
    }

    fn select_where(
        &self,
        criteria: &Criteria,
        near: Option<Near>,
        limit: usize,
        access: Option<&dyn Access>,
        live_only: bool,
    ) -> Vec<Arc<Prepared>> {
        let by_area = live_only;
        let keep = |p: &Arc<Prepared>| {
            let s = &p.state;
            (!by_area || s.status != VehicleStatus::Offline)
                && criteria.matches_state(s)
                && access.is_none_or(|a| {
                    a.may_read_vehicle(&s.vehicle, s.route.as_deref(), s.trip.as_deref())
                })
        };
        let mut found: Vec<Arc<Prepared>> = Vec::new();
        if let Some(v) = &criteria.vehicle {
            found.extend(self.get(v).filter(|p| keep(p)));
        } else {
            let circle = near.and_then(|n| n.radius_m.map(|r| Bbox::around(n.lat, n.lon, r)));
            // Some(None): the bbox and the circle do not overlap.
            let area: Option<Option<Bbox>> = match (criteria.bbox, circle) {
                (Some(b), Some(c)) => Some(intersect(&b, &c)),
                (b, c) => b.or(c).map(Some),
            };
            let cells = match area {
                Some(Some(b)) => self.grid.cells(&b, MAX_QUERY_CELLS),
                _ => None,
            };
            match (area, cells) {
                (Some(None), _) => {} // disjoint areas: nothing can match
                (_, Some(cells)) => {
                    for lock in self.shards.iter() {
                        let shard = Self::read(lock);
                        for c in &cells {
                            let Some(ids) = shard.cells.get(c) else {
                                continue;
                            };
                            found.extend(
                                ids.iter()
                                    .filter_map(|id| shard.map.get(id))
                                    .map(|e| &e.latest)
                                    .filter(|p| keep(p))
                                    .cloned(),
                            );
                        }
                    }
                }
                _ => {
                    for lock in self.shards.iter() {
                        let shard = Self::read(lock);
                        found.extend(
                            shard
                                .map
                                .values()
                                .map(|e| &e.latest)
                                .filter(|p| keep(p))
                                .cloned(),
                        );
                    }
                }
            }
        }
        match near {
            Some(n) => {
                let mut with_d: Vec<(f64, Arc<Prepared>)> = found
                    .into_iter()
                    .map(|p| (haversine_m(n.centre(), p.state.position()), p))
                    .filter(|(d, _)| n.radius_m.is_none_or(|r| *d <= r))
                    .collect();
                with_d.sort_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then_with(|| a.1.state.vehicle.cmp(&b.1.state.vehicle))
                });
                with_d.truncate(limit);
                with_d.into_iter().map(|(_, p)| p).collect()
            }
            None => {
                found.sort_by(|a, b| a.state.vehicle.cmp(&b.state.vehicle));
                found.truncate(limit);
                found
            }
        }
    }
}

/// The intersection of two boxes, `None` when disjoint.
fn intersect(a: &Bbox, b: &Bbox) -> Option<Bbox> {
    Bbox::new([
        a.min_lon.max(b.min_lon),
        a.min_lat.max(b.min_lat),
        a.max_lon.min(b.max_lon),
        a.max_lat.min(b.max_lat),
    ])
    .ok()
}

fn remove_from_cell(
    cells: &mut HashMap<Cell, HashSet<Arc<str>, RandomState>, RandomState>,
    cell: Cell,
    id: &str,
) {
    if let Some(set) = cells.get_mut(&cell) {
        set.remove(id);
        if set.is_empty() {
            cells.remove(&cell);
        }
    }
}
