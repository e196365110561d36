//! Other nodes' states that no client of this node watches, held back until something reads
//! them.
//!
//! Every node keeps the whole fleet, so that REST, `near`, `bbox` and the GTFS-Realtime feeds
//! of any node answer for every vehicle. Parsing each state another node processed and indexing
//! it in the bridge hub and the GTFS-Realtime live set costs a receiving node a large part of
//! what processing it cost its owner, and in a 3-node cluster every state is received twice.
//! Most of those states are of vehicles no client of the receiving node watches. Such a state
//! is held here unparsed, the latest per vehicle (a newer one replaces it), and the held states
//! are pushed when the hub or the live set is read ([`Deferred::catch_up`], which their reads
//! run first: REST, `near`, `bbox`, subscription snapshots, `/track`, the GTFS-Realtime
//! feeds). What a read sees is therefore the same as if every state had been pushed on
//! arrival.
//!
//! An event pushes its vehicle's held state first only if some subscription may want the
//! event (as for a state, from the event's route and trip).
//!
//! Pushed at once, after dropping any held state of the vehicle: a state some subscription of
//! this node may want ([`Hub::watches`]: its vehicle, its new or previous route or trip is
//! subscribed, or any bbox or unfiltered subscription exists) and the first state this node
//! receives of a vehicle (so the fleet lists it).
//! Never held: the MQTT message (`vehicles/{id}`, retained, routed on arrival with the received
//! JSON as its payload) and the trip book (riders' rights are judged when that message is
//! delivered); the caller does both from the record's header, unparsed.
//!
//! # Bounds
//! One held state per vehicle (its JSON, ~0.5 KB), at most [`MAX_HELD`] vehicles: a state of
//! a further vehicle first pushes everything held.
//!
//! # Order
//! States are pushed only under one lock, and a state older than the hub's is dropped when it
//! comes to be pushed, so a vehicle's states never go in out of order: not when a state that
//! must go in at once overtakes a held one that a catch-up took, and not when the vehicle moved
//! to this node, whose own newer state went into the hub directly. The lock is a std lock held
//! while parsing and pushing at most [`CHUNK`] states (no `.await`); a catch-up pushes at most
//! one state per vehicle held.
//!
//! The orphan check (`orphans`, every 5 s on one node) does not catch up: of the vehicles the
//! hub has heard nothing of for long, one with a held state that came recently is not silent
//! ([`Deferred::silent_for`]), and only one whose held state is old too is pushed to see
//! whether it says offline.
//!
//! The hub's in-memory track (`/track` while Redis is away) keeps only the states pushed: on a
//! node that no one asks about a vehicle, one point per catch-up. With Redis up, `/track`
//! reads the owner's track from Redis.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use fleetmq_bridge::Hub;
use geo_engine::schedule::TripFit;
use geo_engine::{Event, VehicleState, VehicleStatus};

use crate::hash::FastMap;
use crate::ingest::{Ingest, StateSink};

/// Vehicles with a held state at most; a state of a further vehicle pushes them all first.
pub const MAX_HELD: usize = 1_000_000;

/// States one catch-up pushes under one take of the push lock: a state that must go in at
/// once waits for at most this many.
const CHUNK: usize = 64;

/// One held state: the JSON as its node made it, the header's trip fit, when it came.
struct Held {
    json: Arc<str>,
    fit: Option<TripFit>,
    deviated: bool,
    arrived: Instant,
}

/// What the receiver read of a state from its record's header.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub vehicle: &'a str,
    pub route: Option<&'a str>,
    pub trip: Option<&'a str>,
    /// The vehicle's first state this node received: it goes in at once, so the fleet lists
    /// the vehicle.
    pub first: bool,
    /// When its frame came (one clock read per frame, not per state).
    pub arrived: Instant,
}

/// Received states on their way into this node's hub and GTFS-Realtime live set (module doc).
pub struct Deferred {
    held: Mutex<FastMap<Arc<str>, Held>>,
    /// Taken for every push, so a vehicle's states go in in order.
    pushing: Mutex<()>,
    /// What a pushed state goes into beside the live set: the hub's sink (tests: recorders).
    sinks: Vec<Arc<dyn StateSink>>,
    /// The GTFS-Realtime live set.
    ingest: Arc<Ingest>,
    /// What decides whether a state may wait; `None`: none waits.
    hub: Option<Hub>,
    /// [`MAX_HELD`], smaller in tests.
    max_held: usize,
    /// States pushed on arrival, and held (pushed later or replaced by a newer one).
    at_once: AtomicU64,
    waited: AtomicU64,
}

impl Deferred {
    /// Pushes into `sinks` and `ingest`'s live set; holds back what `hub` does not watch
    /// (`None`: nothing is held back).
    pub fn new(sinks: Vec<Arc<dyn StateSink>>, ingest: Arc<Ingest>, hub: Option<Hub>) -> Arc<Self> {
        Self::with_max_held(sinks, ingest, hub, MAX_HELD)
    }

    fn with_max_held(
        sinks: Vec<Arc<dyn StateSink>>,
        ingest: Arc<Ingest>,
        hub: Option<Hub>,
        max_held: usize,
    ) -> Arc<Self> {
        let deferred = Arc::new(Deferred {
            held: Mutex::new(FastMap::default()),
            pushing: Mutex::new(()),
            sinks,
            ingest,
            hub,
            max_held,
            at_once: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        });
        // The hub and the live set catch up before each read. Weak: they hold the hooks and
        // this holds the hub, so a strong hook would be a cycle (hub → hook → this → hub).
        let hook = |weak: Weak<Deferred>| -> fleetmq_bridge::hub::CatchUp {
            Box::new(move || {
                if let Some(d) = weak.upgrade() {
                    d.catch_up();
                }
            })
        };
        if let Some(hub) = &deferred.hub {
            hub.set_catch_up(hook(Arc::downgrade(&deferred)));
        }
        deferred
            .ingest
            .live()
            .set_catch_up(hook(Arc::downgrade(&deferred)));
        deferred
    }

    /// A state another node processed (`json`, with its header's trip fit and deviation): held,
    /// or pushed at once (module doc).
    pub fn state(&self, r: Received<'_>, json: Arc<str>, fit: Option<TripFit>, deviated: bool) {
        let vehicle = r.vehicle;
        let held = Held {
            json,
            fit,
            deviated,
            arrived: r.arrived,
        };
        let wanted = r.first
            || self
                .hub
                .as_ref()
                .is_none_or(|h| h.watches(vehicle, r.route, r.trip));
        let held = if wanted {
            held
        } else {
            match self.hold(vehicle, held) {
                None => {
                    self.waited.fetch_add(1, Relaxed);
                    return;
                }
                Some(full) => {
                    self.catch_up();
                    full
                }
            }
        };
        self.at_once.fetch_add(1, Relaxed);
        let _pushing = self.lock_pushing();
        // What was held of the vehicle is older than this state, which replaces it.
        self.lock_held().remove(vehicle);
        self.push(vehicle, held);
    }

    /// Holds `held` as `vehicle`'s latest; gives it back when [`MAX_HELD`] other vehicles are
    /// held.
    fn hold(&self, vehicle: &str, held: Held) -> Option<Held> {
        let mut map = self.lock_held();
        if let Some(slot) = map.get_mut(vehicle) {
            *slot = held;
            return None;
        }
        if map.len() >= self.max_held {
            return Some(held);
        }
        map.insert(Arc::from(vehicle), held);
        None
    }

    /// An event another node processed: after the vehicle's held state when a subscription
    /// may want the event (the hub reads the vehicle's route and trip from its latest state
    /// when the event names none, and a watcher sees the state before the event). Else the
    /// state stays held: a held state's route and trip are watched by none (or it would have
    /// gone in), and a new subscription reads, so catches up, first.
    pub fn event(&self, event: &Arc<Event>) {
        let wanted = self.hub.as_ref().is_none_or(|h| {
            h.watches(
                &event.vehicle,
                event.route.as_deref(),
                event.trip.as_deref(),
            )
        });
        if wanted {
            self.push_held(&event.vehicle);
        }
        for sink in &self.sinks {
            sink.event(event);
        }
    }

    /// Pushes every held state, [`CHUNK`] at a time under the push lock, so that a state that
    /// must go in at once never waits for a whole fleet's worth. A held state taken here and
    /// overtaken by a newer one pushed between two chunks is dropped by the age check.
    pub fn catch_up(&self) {
        let taken = std::mem::take(&mut *self.lock_held());
        let mut taken = taken.into_iter().peekable();
        while taken.peek().is_some() {
            let _pushing = self.lock_pushing();
            for (vehicle, held) in taken.by_ref().take(CHUNK) {
                self.push(&vehicle, held);
            }
        }
    }

    /// When the state held of `vehicle` came, if one is held (it is newer than the hub's).
    fn held_since(&self, vehicle: &str) -> Option<Instant> {
        self.lock_held().get(vehicle).map(|h| h.arrived)
    }

    /// Vehicles not offline that nothing was heard of for `d`, for the orphan check, without
    /// catching up: of those the hub has not heard of, a state held that came less than `d`
    /// ago means the vehicle is not silent; an older one is pushed, and says whether the
    /// vehicle went offline meanwhile. Without a hub, none.
    pub fn silent_for(&self, d: Duration) -> Vec<Arc<str>> {
        let Some(hub) = &self.hub else {
            return Vec::new();
        };
        let mut silent = hub.silent_for(d);
        silent.retain(|v| match self.held_since(v) {
            None => true,
            Some(at) if at.elapsed() < d => false,
            Some(_) => {
                self.push_held(v);
                hub.pushed(v)
                    .is_some_and(|s| s.status != VehicleStatus::Offline)
            }
        });
        silent
    }

    /// Pushes the state held of `vehicle`, if one is; returns when it came.
    fn push_held(&self, vehicle: &str) -> Option<Instant> {
        let _pushing = self.lock_pushing();
        let held = self.lock_held().remove(vehicle)?;
        let arrived = held.arrived;
        self.push(vehicle, held);
        Some(arrived)
    }

    /// States held now.
    pub fn held(&self) -> usize {
        self.lock_held().len()
    }

    /// `fleetmq_cluster_states_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = write!(
            out,
            "# HELP fleetmq_cluster_states_held Other nodes' states of vehicles no client of this node watches, held unparsed until the fleet is read (one per vehicle).\n\
             # TYPE fleetmq_cluster_states_held gauge\nfleetmq_cluster_states_held {}\n\
             # HELP fleetmq_cluster_states_received_total Other nodes' states taken into this node's hub: at once (watched, or a vehicle's first), or held first.\n\
             # TYPE fleetmq_cluster_states_received_total counter\n\
             fleetmq_cluster_states_received_total{{path=\"at_once\"}} {}\n\
             fleetmq_cluster_states_received_total{{path=\"held\"}} {}\n",
            self.held(),
            self.at_once.load(Relaxed),
            self.waited.load(Relaxed),
        );
    }

    /// Parses one state and pushes it into the sinks and the live set; one that does not parse,
    /// names another vehicle or is older than the hub's is dropped. Called under `pushing`.
    fn push(&self, vehicle: &str, held: Held) {
        let state = match serde_json::from_str::<VehicleState>(&held.json) {
            Ok(s) if *s.vehicle == *vehicle => s,
            Ok(_) => {
                tracing::warn!(
                    vehicle,
                    "cluster: a state of another vehicle than its header"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster: unreadable state on the bus; skipped");
                return;
            }
        };
        let pushed = self.hub.as_ref().and_then(|h| h.pushed(vehicle));
        if pushed.is_some_and(|p| p.ts > state.ts) {
            return;
        }
        let state = Arc::new(state);
        for sink in &self.sinks {
            sink.state_json(&state, &held.json);
        }
        self.ingest.remote_state(state, held.fit, held.deviated);
    }

    fn lock_held(&self) -> MutexGuard<'_, FastMap<Arc<str>, Held>> {
        // Nothing panics while it is held.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pushing(&self) -> MutexGuard<'_, ()> {
        self.pushing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[path = "deferred_tests.rs"]
mod tests;
