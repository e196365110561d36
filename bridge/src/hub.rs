//! The [`Hub`]: where the broker pushes every processed state and event, and from where they fan
//! out to the interested stream clients. It owns the fleet (latest states, tracks, position
//! index), the subscription index and the registry of connected clients.
//!
//! Pushing is cheap and never blocks on a client: it updates the fleet under a short shard lock,
//! looks up the interested subscriptions under a read lock, and offers the state to each client's
//! bounded coalescing queue.
//!
//! The hub's state is reachable only through its methods: the REST handlers read the fleet with
//! [`Hub::select`], [`Hub::prepared`] and [`Hub::track`]; a [`Session`] files and unfiles its
//! subscriptions ([`Hub::file_sub`], [`Hub::unfile_sub`]), takes its snapshot ([`Hub::snapshot`])
//! and leaves with [`Hub::forget_client`]. Every lock is a std lock taken and released inside one
//! method, so none is ever held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use geo_engine::{Event, VehicleState};
use tokio::time::Instant;

use crate::client::{Client, CloseReason, QueueLimits, SubKey};
use crate::filter::Criteria;
use crate::fleet::{Fleet, Near, Prepared, to_json};
use crate::grid::Grid;
use crate::metrics::{Metrics, inc};
use crate::port::Access;
use crate::session::Session;
use crate::subs::{SubIndex, SubRef, Target};
use crate::track::TrackPoint;

/// Limits and tuning of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A client that stays behind this long is closed with 1013
    /// (docs/http-api.md#connection-limits: 30 s).
    pub slow_client_timeout: Duration,
    /// How long the writer of a busy WebSocket or SSE client lets updates gather after each
    /// write ([`crate::pump`]); zero writes each batch as soon as it is due.
    pub write_delay: Duration,
    /// Track points kept per vehicle for `/track` when the broker has no durable store.
    pub track_capacity: usize,
    /// Track points kept over all vehicles (about 64 bytes each); past it, each new point of a
    /// vehicle replaces that vehicle's oldest.
    pub track_budget: usize,
    /// Vehicles the hub holds at most; states of further vehicles are refused and counted.
    pub max_vehicles: usize,
    /// Events waiting per client before new ones are dropped.
    pub client_event_queue: usize,
    /// Control messages (snapshots, errors) waiting per client.
    pub client_control_queue: usize,
    /// Subscriptions per client.
    pub max_subscriptions: usize,
    /// Side of a grid cell of the position and subscription indexes, degrees.
    pub cell_deg: f64,
    /// A bbox subscription covering more cells than this is checked on every push instead.
    pub max_sub_cells: usize,
    /// Messages handed to a client's writer at once.
    pub batch: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            slow_client_timeout: Duration::from_secs(30),
            write_delay: Duration::from_millis(5),
            track_capacity: 1000,
            track_budget: 4_000_000,
            max_vehicles: 1_000_000,
            client_event_queue: 1024,
            client_control_queue: 64,
            max_subscriptions: 64,
            cell_deg: 0.05,
            max_sub_cells: 1024,
            batch: 256,
        }
    }
}

/// State shared by all handles; only [`Hub`]'s methods touch it.
struct HubInner {
    /// Limits, fixed at creation.
    config: HubConfig,
    /// Latest states, tracks and the position index (sharded, locked inside).
    fleet: Fleet,
    /// Which subscription wants which vehicle: read on every push, written on (un)subscribe.
    subs: RwLock<SubIndex>,
    /// Connected stream clients, for closing them all on shutdown. Weak: a session owns its
    /// client and removes it here when it ends.
    clients: Mutex<HashMap<u64, Weak<Client>>>,
    /// Id of the next client.
    next_client: AtomicU64,
    /// The bridge's counters, shared with each client.
    metrics: Arc<Metrics>,
    /// The last events, for snapshots and `/api/v1/events` without history.
    recent: crate::recent::RecentEvents,
    /// Pushes the states an upstream holds back ([`Hub::set_catch_up`]) before a read.
    catch_up: OnceLock<CatchUp>,
}

/// What pushes the states an upstream holds back, before the hub answers a read.
pub type CatchUp = Box<dyn Fn() + Send + Sync>;

/// The bridge's live view of the fleet; cheap to clone.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use fleetmq_bridge::{Hub, HubConfig};
/// use geo_engine::{VehicleState, VehicleStatus};
///
/// let hub = Hub::new(HubConfig::default());
/// let state = VehicleState {
///     vehicle: "bus-12".into(), lat: -16.92, lon: 145.77, raw_lat: -16.92, raw_lon: 145.77,
///     ts: 1_763_700_000_000, speed: Some(8.0), heading: None, route: Some("110".into()), trip: None,
///     status: VehicleStatus::Moving, on_route: Some(true), off_route_m: None, progress_m: None,
///     next_stop: None, delay_s: None, trip_inferred: None, accuracy: None, altitude: None, battery: None, received_at: 1_763_700_000_050, processed_at: 1_763_700_000_051,
/// };
/// hub.push_state(Arc::new(state));
/// assert_eq!(hub.len(), 1);
/// assert_eq!(hub.latest("bus-12").map(|s| s.ts), Some(1_763_700_000_000));
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Hub {
    /// A hub with no vehicles and no clients.
    pub fn new(config: HubConfig) -> Hub {
        let grid = Grid::new(config.cell_deg);
        Hub {
            inner: Arc::new(HubInner {
                fleet: Fleet::new(
                    grid,
                    config.track_capacity,
                    config.track_budget,
                    config.max_vehicles,
                ),
                subs: RwLock::new(SubIndex::new(grid, config.max_sub_cells)),
                clients: Mutex::new(HashMap::new()),
                next_client: AtomicU64::new(1),
                metrics: Arc::new(Metrics::default()),
                recent: crate::recent::RecentEvents::default(),
                catch_up: OnceLock::new(),
                config,
            }),
        }
    }

    /// Records a processed state and offers it to every subscription that selects it now, or
    /// selected its previous state (so a client sees a vehicle leave its bbox or route).
    pub fn push_state(&self, state: Arc<VehicleState>) {
        self.push_prepared(Arc::new(Prepared::new(state)));
    }

    /// As [`Hub::push_state`], with the state's JSON already made (the broker's `vehicles/{id}`
    /// payload): the hub then never serializes the state itself.
    pub fn push_state_json(&self, state: Arc<VehicleState>, json: Arc<str>) {
        self.push_prepared(Arc::new(Prepared::with_json(state, json)));
    }

    fn push_prepared(&self, p: Arc<Prepared>) {
        let m = &self.inner.metrics;
        inc(&m.states_pushed);
        let (prev, vehicle) = match self.inner.fleet.upsert(&p) {
            Ok(found) => found,
            Err(_) => {
                inc(&m.states_refused);
                return;
            }
        };
        let mut targets: Vec<Target> = Vec::new();
        self.inner.read_subs().state_targets_with_prev(
            &p.state,
            prev.as_ref().map(|prev| &*prev.state),
            &mut targets,
        );
        if targets.is_empty() {
            return;
        }
        let now = Instant::now();
        for (client, sub) in targets {
            client.offer_state(sub, &p, vehicle, now);
        }
    }

    /// Offers an event to every subscription that wants events of its vehicle. Events are not
    /// coalesced; a client whose event queue is full loses it (counted).
    pub fn push_event(&self, event: Arc<Event>) {
        inc(&self.inner.metrics.events_pushed);
        self.inner.recent.push(event.clone());
        let latest = if event.route.is_none() || event.trip.is_none() {
            self.inner.fleet.get(&event.vehicle)
        } else {
            None
        };
        let route = event
            .route
            .as_deref()
            .or_else(|| latest.as_ref().and_then(|p| p.state.route.as_deref()));
        let trip = event
            .trip
            .as_deref()
            .or_else(|| latest.as_ref().and_then(|p| p.state.trip.as_deref()));
        let mut targets: Vec<Target> = Vec::new();
        self.inner
            .read_subs()
            .event_targets(&event, route, trip, &mut targets);
        if targets.is_empty() {
            return;
        }
        let json = to_json(&*event);
        let now = Instant::now();
        for (client, sub) in targets {
            client.offer_event(sub, &json, now);
        }
    }

    /// The writer's timing of this hub's clients.
    pub(crate) fn pace(&self) -> crate::pump::Pace {
        crate::pump::Pace {
            slow: self.inner.config.slow_client_timeout,
            write_delay: self.inner.config.write_delay,
        }
    }

    /// Sets what pushes the states an upstream holds back: a cluster node keeps other nodes'
    /// states of vehicles no client of its watches unparsed ([`Hub::watches`]) and pushes the
    /// latest of each when something reads the fleet. Every read of the fleet ([`Hub::latest`],
    /// REST, `near`, `bbox`, snapshots, `/track`) runs it first; pushes, [`Hub::len`] and
    /// [`Hub::silent_for`] do not (`catch_up` pushes). Set once; later calls are ignored.
    pub fn set_catch_up(&self, catch_up: CatchUp) {
        let _ = self.inner.catch_up.set(catch_up);
    }

    /// Runs the upstream's catch-up, if any, before a read.
    fn caught_up(&self) -> &Fleet {
        if let Some(catch_up) = self.inner.catch_up.get() {
            catch_up();
        }
        &self.inner.fleet
    }

    /// Whether a subscription may want a state of `vehicle` on `route` and `trip` now, or
    /// wanted the vehicle's latest pushed state (which it would see it leave): filed under
    /// the vehicle, either trip or route, or under a bbox or nothing selective (those take
    /// any vehicle). The latest pushed state is looked up only when some subscription is
    /// filed under a route or trip. No catch-up.
    pub fn watches(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        {
            let subs = self.inner.read_subs();
            if subs.may_want(vehicle, route, trip) {
                return true;
            }
            if !subs.files_routes_or_trips() {
                return false;
            }
        }
        let Some(prev) = self.inner.fleet.get(vehicle) else {
            return false;
        };
        let prev = &prev.state;
        self.inner
            .read_subs()
            .may_want(vehicle, prev.route.as_deref(), prev.trip.as_deref())
    }

    /// The latest state pushed of `vehicle`, without catching up.
    pub fn pushed(&self, vehicle: &str) -> Option<Arc<VehicleState>> {
        self.inner.fleet.get(vehicle).map(|p| p.state.clone())
    }

    /// The latest state of a vehicle.
    pub fn latest(&self, vehicle: &str) -> Option<Arc<VehicleState>> {
        self.caught_up().get(vehicle).map(|p| p.state.clone())
    }

    /// Vehicles not offline whose latest state pushed came in longer than `silent_for` ago.
    /// No catch-up: an upstream holding states back knows which of these it holds a newer
    /// state of.
    pub fn silent_for(&self, silent_for: std::time::Duration) -> Vec<Arc<str>> {
        self.inner.fleet.silent_for(silent_for)
    }

    /// Number of vehicles with a known state (no catch-up: a vehicle's first state is never
    /// held back, see [`Hub::watches`]).
    pub fn len(&self) -> usize {
        self.inner.fleet.count()
    }

    /// Whether no vehicle has a state yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bridge's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The configuration the hub was made with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Closes every stream client (WebSocket close 1001, SSE streams end); used on shutdown.
    pub fn close_all(&self) {
        for c in self.inner.live_clients() {
            c.close(CloseReason::Shutdown);
        }
    }

    /// The most states, events and control messages any one connected client has waiting (a
    /// client that stops reading holds at most one state per subscribed vehicle).
    pub fn largest_queue(&self) -> usize {
        let clients = self.inner.live_clients();
        clients.iter().map(|c| c.queued()).max().unwrap_or(0)
    }

    /// Registers a new stream client that may read what `access` allows (`None`: everything).
    pub(crate) fn connect(&self, access: Option<Arc<dyn Access>>) -> Session {
        let id = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
        let c = &self.inner.config;
        let limits = QueueLimits {
            events: c.client_event_queue,
            control: c.client_control_queue,
            batch: c.batch,
        };
        let client = Arc::new(Client::new(id, limits, self.inner.metrics.clone()));
        self.inner
            .lock_clients()
            .insert(id, Arc::downgrade(&client));
        Session::new(self.clone(), client, access)
    }

    /// The latest state of `vehicle` with its JSON, as the REST API serves it.
    pub(crate) fn prepared(&self, vehicle: &str) -> Option<Arc<Prepared>> {
        self.caught_up().get(vehicle)
    }

    /// The states matching `criteria` that `access` may read (`None`: all): nearest `near` first
    /// when given, else by vehicle id; at most `limit`.
    pub(crate) fn select(
        &self,
        criteria: &Criteria,
        near: Option<Near>,
        limit: usize,
        access: Option<&dyn Access>,
    ) -> Vec<Arc<Prepared>> {
        self.caught_up().select(criteria, near, limit, access)
    }

    /// A subscription's snapshot: every state matching `criteria` that `access` may read.
    pub(crate) fn snapshot(
        &self,
        criteria: &Criteria,
        access: Option<&dyn Access>,
    ) -> Vec<Arc<Prepared>> {
        self.caught_up().select_all(criteria, access)
    }

    /// Track points of `vehicle` with `from <= ts <= to`, at most `max`; `None` for an unknown
    /// vehicle.
    pub(crate) fn track(
        &self,
        vehicle: &str,
        from: i64,
        to: i64,
        max: usize,
    ) -> Option<Vec<TrackPoint>> {
        self.caught_up().track(vehicle, from, to, max)
    }

    /// The last events (for snapshots and `/api/v1/events` without history); it locks itself.
    pub(crate) fn recent_events(&self) -> &crate::recent::RecentEvents {
        &self.inner.recent
    }

    /// Files a subscription in the index: pushes reach it from now on.
    pub(crate) fn file_sub(&self, sub: SubRef) {
        self.inner.write_subs().insert(sub);
    }

    /// Takes subscription `key` of `client` out of the index (`criteria` and `states` as filed).
    pub(crate) fn unfile_sub(
        &self,
        client: u64,
        key: SubKey,
        criteria: &Arc<Criteria>,
        states: bool,
    ) {
        self.inner
            .write_subs()
            .remove(client, key, criteria, states);
    }

    /// A client's connection ended: unfiles its subscriptions `(key, criteria, states)` under
    /// one index lock and drops it from the registry.
    pub(crate) fn forget_client<'a>(
        &self,
        client: u64,
        subs: impl IntoIterator<Item = (SubKey, &'a Arc<Criteria>, bool)>,
    ) {
        {
            let mut index = self.inner.write_subs();
            for (key, criteria, states) in subs {
                index.remove(client, key, criteria, states);
            }
        }
        self.inner.lock_clients().remove(&client);
    }
}

impl HubInner {
    fn read_subs(&self) -> std::sync::RwLockReadGuard<'_, SubIndex> {
        // Nothing panics while the index lock is held.
        self.subs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_subs(&self) -> std::sync::RwLockWriteGuard<'_, SubIndex> {
        self.subs.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The connected clients, collected so no client lock is taken under the registry's.
    fn live_clients(&self) -> Vec<Arc<Client>> {
        self.lock_clients()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Client>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::session::SubSpec;

    fn state(vehicle: &str, route: &str) -> Arc<VehicleState> {
        let json = serde_json::json!({
            "vehicle": vehicle, "lat": -16.92, "lon": 145.77, "raw_lat": -16.92,
            "raw_lon": 145.77, "ts": 1, "route": route, "status": "moving",
            "received_at": 1, "processed_at": 1
        });
        Arc::new(serde_json::from_value(json).expect("state"))
    }

    /// `watches` says which states an upstream may hold back; reads catch up, pushes and
    /// `watches` do not.
    #[test]
    fn watches_follows_subscriptions_and_reads_catch_up_first() {
        let hub = Hub::new(HubConfig::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        hub.set_catch_up(Box::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        hub.push_state(state("bus-1", "R1"));
        hub.push_state(state("bus-2", "R2"));
        assert!(!hub.watches("bus-9", None, None), "a vehicle not known yet");
        assert!(!hub.watches("bus-1", Some("R1"), None), "no subscription");
        let mut session = hub.connect(None);
        let spec = |criteria: Criteria| SubSpec {
            criteria,
            states: true,
            events: false,
            max_hz: 1.0,
            batch: false,
        };
        let vehicle = Criteria {
            vehicle: Some(Arc::from("bus-1")),
            ..Criteria::default()
        };
        session.subscribe("a", spec(vehicle)).expect("subscribed");
        assert!(hub.watches("bus-1", Some("R1"), None));
        assert!(!hub.watches("bus-2", Some("R2"), None));
        // bus-2 coming onto R3, which someone follows; and leaving R2, which someone follows.
        let route = |r: &str| Criteria {
            route: Some(Arc::from(r)),
            ..Criteria::default()
        };
        session
            .subscribe("b", spec(route("R3")))
            .expect("subscribed");
        assert!(hub.watches("bus-2", Some("R3"), None));
        session.unsubscribe("b");
        session
            .subscribe("c", spec(route("R2")))
            .expect("subscribed");
        assert!(hub.watches("bus-2", Some("R4"), None), "leaves R2");
        let before = calls.load(Ordering::Relaxed);
        assert_eq!(hub.pushed("bus-2").map(|s| s.ts), Some(1));
        assert_eq!(calls.load(Ordering::Relaxed), before, "no catch-up");
        assert!(hub.latest("bus-2").is_some());
        assert_eq!(
            calls.load(Ordering::Relaxed),
            before + 1,
            "a read caught up"
        );
    }
}
