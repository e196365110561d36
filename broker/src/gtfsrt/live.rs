//! The latest of each vehicle that the feeds are built from: its processed state, its trip fit
//! (GTFS networks), and since when it deviates from its route. Bounded by the number of
//! vehicles the broker tracks; an offline vehicle is removed.

use std::sync::{Arc, Mutex, OnceLock};

use geo_engine::VehicleState;
use geo_engine::schedule::TripFit;

/// One vehicle as the feeds see it.
#[derive(Debug, Clone)]
pub struct Live {
    pub state: Arc<VehicleState>,
    pub fit: Option<TripFit>,
    /// Fix time the current deviation began, Unix ms; `None` while on route.
    pub deviated_since: Option<i64>,
}

/// Every online vehicle, by id. The lock is held only to insert or to copy the map out.
#[derive(Default)]
pub struct LiveVehicles {
    map: Mutex<crate::hash::FastMap<Arc<str>, Arc<Live>>>,
    /// Updates the set with the states an upstream holds back, before a snapshot (a cluster
    /// node's other nodes' states, `cluster/deferred.rs`).
    catch_up: OnceLock<fleetmq_bridge::hub::CatchUp>,
}

impl LiveVehicles {
    /// Sets what [`LiveVehicles::snapshot`] runs first; set once, later calls are ignored.
    pub fn set_catch_up(&self, catch_up: fleetmq_bridge::hub::CatchUp) {
        let _ = self.catch_up.set(catch_up);
    }

    /// Records a vehicle's new state; returns the previous record.
    pub fn update(
        &self,
        state: Arc<VehicleState>,
        fit: Option<TripFit>,
        deviated: bool,
    ) -> (Arc<Live>, Option<Arc<Live>>) {
        let since = |prev: Option<&Arc<Live>>| {
            deviated.then(|| prev.and_then(|p| p.deviated_since).unwrap_or(state.ts))
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // A known vehicle (every update but its first): one lookup, no key allocation.
        let slot = map.get_mut(&*state.vehicle);
        let live = Arc::new(Live {
            state: state.clone(),
            fit,
            deviated_since: since(slot.as_deref()),
        });
        let prev = match slot {
            Some(slot) => Some(std::mem::replace(slot, live.clone())),
            None => {
                map.insert(state.vehicle.clone(), live.clone());
                None
            }
        };
        drop(map);
        (live, prev)
    }

    /// The vehicle went offline: it leaves the feeds.
    pub fn remove(&self, vehicle: &str) -> Option<Arc<Live>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(vehicle)
    }

    /// Every vehicle, sorted by id (a stable feed order), after catching up.
    pub fn snapshot(&self) -> Vec<Arc<Live>> {
        if let Some(catch_up) = self.catch_up.get() {
            catch_up();
        }
        let mut v: Vec<Arc<Live>> = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.state.vehicle.cmp(&b.state.vehicle));
        v
    }
}
