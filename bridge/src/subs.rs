//! The subscription index: finds the subscriptions interested in a state or an event without
//! looking at the others. Each subscription is filed under its most selective criterion — vehicle,
//! then trip, then route, then the grid cells its bbox covers — or, when it has none or its bbox
//! covers too many cells, in a short "wide" list checked on every push.

use std::collections::HashMap;
use std::sync::Arc;

use geo_engine::{Event, VehicleState};

use crate::client::{Client, ClientId, SubKey};
use crate::filter::Criteria;
use crate::grid::{Cell, Grid};
use crate::port::Access;

/// One registered subscription.
#[derive(Clone)]
pub struct SubRef {
    /// The client it belongs to.
    pub client: Arc<Client>,
    /// Its key within the client.
    pub sub: SubKey,
    /// What it selects.
    pub criteria: Arc<Criteria>,
    /// Whether it receives states (updates).
    pub states: bool,
    /// Whether it receives events.
    pub events: bool,
    /// What its client may read; `None` = everything.
    pub access: Option<Arc<dyn Access>>,
}

impl SubRef {
    fn may_read(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        self.access
            .as_ref()
            .is_none_or(|a| a.may_read_vehicle(vehicle, route, trip))
    }
}

/// Where a subscription is filed.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Vehicle(Arc<str>),
    Trip(Arc<str>),
    Route(Arc<str>),
    Cells(Vec<Cell>),
    Wide,
    /// Events of every vehicle, no states.
    AllEvents,
}

/// A subscription target: the client and the subscription key.
pub type Target = (Arc<Client>, SubKey);

/// The index.
pub struct SubIndex {
    grid: Grid,
    max_cells: usize,
    by_vehicle: HashMap<Arc<str>, Vec<SubRef>>,
    by_trip: HashMap<Arc<str>, Vec<SubRef>>,
    by_route: HashMap<Arc<str>, Vec<SubRef>>,
    by_cell: HashMap<Cell, Vec<SubRef>>,
    wide: Vec<SubRef>,
    all_events: Vec<SubRef>,
}

impl SubIndex {
    /// An empty index over `grid`; a bbox covering more than `max_cells` cells is filed as wide.
    pub fn new(grid: Grid, max_cells: usize) -> SubIndex {
        SubIndex {
            grid,
            max_cells,
            by_vehicle: HashMap::new(),
            by_trip: HashMap::new(),
            by_route: HashMap::new(),
            by_cell: HashMap::new(),
            wide: Vec::new(),
            all_events: Vec::new(),
        }
    }

    /// No subscription of states is filed: every state's targets are none, found without
    /// hashing its vehicle, trip and route (the broker offers every state, watched or not).
    fn is_empty(&self) -> bool {
        self.by_vehicle.is_empty()
            && self.by_trip.is_empty()
            && self.by_route.is_empty()
            && self.by_cell.is_empty()
            && self.wide.is_empty()
    }

    fn slot_for(&self, c: &Criteria, states: bool) -> Slot {
        if let Some(v) = &c.vehicle {
            Slot::Vehicle(v.clone())
        } else if let Some(t) = &c.trip {
            Slot::Trip(t.clone())
        } else if let Some(r) = &c.route {
            Slot::Route(r.clone())
        } else if let Some(cells) = c.bbox.and_then(|b| self.grid.cells(&b, self.max_cells)) {
            Slot::Cells(cells)
        } else if !states && c.is_empty() {
            Slot::AllEvents
        } else {
            Slot::Wide
        }
    }

    /// Files a subscription.
    pub fn insert(&mut self, s: SubRef) {
        match self.slot_for(&s.criteria, s.states) {
            Slot::Vehicle(k) => self.by_vehicle.entry(k).or_default().push(s),
            Slot::Trip(k) => self.by_trip.entry(k).or_default().push(s),
            Slot::Route(k) => self.by_route.entry(k).or_default().push(s),
            Slot::Cells(cells) => {
                for c in cells {
                    self.by_cell.entry(c).or_default().push(s.clone());
                }
            }
            Slot::Wide => self.wide.push(s),
            Slot::AllEvents => self.all_events.push(s),
        }
    }

    /// Removes a subscription filed with `criteria` (as given to [`SubIndex::insert`]).
    pub fn remove(
        &mut self,
        client: ClientId,
        sub: SubKey,
        criteria: &Arc<Criteria>,
        states: bool,
    ) {
        let probe_slot = self.slot_for(criteria, states);
        let keep = |s: &SubRef| !(s.client.id == client && s.sub == sub);
        fn from_map<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Vec<SubRef>>,
            k: &K,
            keep: impl Fn(&SubRef) -> bool,
        ) {
            if let Some(list) = map.get_mut(k) {
                list.retain(keep);
                if list.is_empty() {
                    map.remove(k);
                }
            }
        }
        match probe_slot {
            Slot::Vehicle(k) => from_map(&mut self.by_vehicle, &k, keep),
            Slot::Trip(k) => from_map(&mut self.by_trip, &k, keep),
            Slot::Route(k) => from_map(&mut self.by_route, &k, keep),
            Slot::Cells(cells) => {
                for c in cells {
                    from_map(&mut self.by_cell, &c, keep);
                }
            }
            Slot::Wide => self.wide.retain(keep),
            Slot::AllEvents => self.all_events.retain(keep),
        }
    }

    /// Whether a subscription may want a state of `vehicle` on `route` and `trip`: one filed
    /// under the vehicle, the route or the trip, under a bbox (any vehicle may enter it) or
    /// under nothing selective. Errs on "yes": criteria and rights are not checked.
    pub fn may_want(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        if self.is_empty() {
            return false;
        }
        !self.by_cell.is_empty()
            || !self.wide.is_empty()
            || self.by_vehicle.contains_key(vehicle)
            || trip.is_some_and(|t| self.by_trip.contains_key(t))
            || route.is_some_and(|r| self.by_route.contains_key(r))
    }

    /// Whether any subscription is filed under a route or a trip (then a vehicle's previous
    /// route and trip matter too: its subscribers see it leave).
    pub fn files_routes_or_trips(&self) -> bool {
        !self.by_route.is_empty() || !self.by_trip.is_empty()
    }

    /// Appends the subscriptions that want this state.
    pub fn state_targets(&self, s: &VehicleState, out: &mut Vec<Target>) {
        if self.is_empty() {
            return;
        }
        let cell = self.grid.cell(s.lat, s.lon);
        let lists = [
            self.by_vehicle.get(&*s.vehicle),
            s.trip.as_deref().and_then(|t| self.by_trip.get(t)),
            s.route.as_deref().and_then(|r| self.by_route.get(r)),
            self.by_cell.get(&cell),
            Some(&self.wide),
        ];
        for list in lists.into_iter().flatten() {
            out.extend(
                list.iter()
                    .filter(|r| {
                        r.states
                            && r.criteria.matches_state(s)
                            && r.may_read(&s.vehicle, s.route.as_deref(), s.trip.as_deref())
                    })
                    .map(|r| (r.client.clone(), r.sub)),
            );
        }
    }

    /// Appends, each once, the subscriptions that want state `s` or wanted `prev`, the vehicle's
    /// previous state (so a client sees the vehicle leave its bbox or route). A list both states
    /// select is walked once; the common case (same trip, route and cell) needs no sort.
    pub fn state_targets_with_prev(
        &self,
        s: &VehicleState,
        prev: Option<&VehicleState>,
        out: &mut Vec<Target>,
    ) {
        let Some(p) = prev else {
            return self.state_targets(s, out);
        };
        if self.is_empty() {
            return;
        }
        let wants = |r: &SubRef, s: &VehicleState| {
            r.criteria.matches_state(s)
                && r.may_read(&s.vehicle, s.route.as_deref(), s.trip.as_deref())
        };
        let (cell, prev_cell) = (self.grid.cell(s.lat, s.lon), self.grid.cell(p.lat, p.lon));
        let trip = s.trip.as_deref().and_then(|t| self.by_trip.get(t));
        let route = s.route.as_deref().and_then(|r| self.by_route.get(r));
        let same_trip = s.trip == p.trip;
        let same_route = s.route == p.route;
        let same_cell = cell == prev_cell;
        let both = [
            self.by_vehicle.get(&*s.vehicle),
            if same_trip { trip } else { None },
            if same_route { route } else { None },
            if same_cell {
                self.by_cell.get(&cell)
            } else {
                None
            },
            Some(&self.wide),
        ];
        for list in both.into_iter().flatten() {
            out.extend(
                list.iter()
                    .filter(|r| r.states && (wants(r, s) || wants(r, p)))
                    .map(|r| (r.client.clone(), r.sub)),
            );
        }
        let only = |list: Option<&Vec<SubRef>>, state: &VehicleState, out: &mut Vec<Target>| {
            out.extend(
                list.into_iter()
                    .flatten()
                    .filter(|r| r.states && wants(r, state))
                    .map(|r| (r.client.clone(), r.sub)),
            );
        };
        if !same_trip {
            only(trip, s, out);
            only(p.trip.as_deref().and_then(|t| self.by_trip.get(t)), p, out);
        }
        if !same_route {
            only(route, s, out);
            only(
                p.route.as_deref().and_then(|r| self.by_route.get(r)),
                p,
                out,
            );
        }
        if !same_cell {
            // A bbox subscription is filed under every cell it covers: it may be in both lists.
            let before = out.len();
            only(self.by_cell.get(&cell), s, out);
            only(self.by_cell.get(&prev_cell), p, out);
            if out.len() > before {
                out.sort_by_key(|(c, s)| (c.id, *s));
                out.dedup_by_key(|(c, s)| (c.id, *s));
            }
        }
    }

    /// Appends the subscriptions that want this event; `route` and `trip` are the event's own or
    /// those of the vehicle's latest state.
    pub fn event_targets(
        &self,
        e: &Event,
        route: Option<&str>,
        trip: Option<&str>,
        out: &mut Vec<Target>,
    ) {
        let cell = self.grid.cell(e.lat, e.lon);
        let lists = [
            self.by_vehicle.get(e.vehicle.as_str()),
            trip.and_then(|t| self.by_trip.get(t)),
            route.and_then(|r| self.by_route.get(r)),
            self.by_cell.get(&cell),
            Some(&self.wide),
            Some(&self.all_events),
        ];
        for list in lists.into_iter().flatten() {
            out.extend(
                list.iter()
                    .filter(|r| {
                        r.events
                            && r.criteria.matches_event(e, route, trip)
                            && r.may_read(&e.vehicle, route, trip)
                    })
                    .map(|r| (r.client.clone(), r.sub)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::QueueLimits;
    use crate::grid::Bbox;
    use crate::metrics::Metrics;

    fn sub(id: u64, criteria: Criteria, states: bool, events: bool) -> SubRef {
        let limits = QueueLimits {
            events: 1,
            control: 1,
            batch: 1,
        };
        let client = Arc::new(Client::new(id, limits, Arc::new(Metrics::default())));
        SubRef {
            client,
            sub: 0,
            criteria: Arc::new(criteria),
            states,
            events,
            access: None,
        }
    }

    fn state(vehicle: &str, route: &str, lat: f64, lon: f64) -> VehicleState {
        VehicleState {
            vehicle: vehicle.into(),
            lat,
            lon,
            raw_lat: lat,
            raw_lon: lon,
            ts: 1,
            speed: None,
            heading: None,
            route: Some(route.into()),
            trip: None,
            status: geo_engine::VehicleStatus::Moving,
            on_route: None,
            off_route_m: None,
            progress_m: None,
            next_stop: None,
            delay_s: None,
            trip_inferred: None,
            accuracy: None,
            altitude: None,
            battery: None,
            received_at: 1,
            processed_at: 1,
        }
    }

    #[test]
    fn only_interested_subscriptions_are_found_and_removal_works() {
        let mut index = SubIndex::new(Grid::new(0.05), 1024);
        // Many subscriptions that are not interested in bus-1 on R1 in Cairns.
        for i in 0..1000 {
            let c = Criteria {
                route: Some(Arc::from(format!("other-{i}").as_str())),
                ..Criteria::default()
            };
            index.insert(sub(100 + i, c, true, false));
        }
        let by_route = Criteria {
            route: Some(Arc::from("R1")),
            ..Criteria::default()
        };
        let by_box = Criteria {
            bbox: Some(Bbox::new([145.7, -17.0, 145.8, -16.8]).expect("bbox")),
            ..Criteria::default()
        };
        let elsewhere = Criteria {
            bbox: Some(Bbox::new([10.0, 50.0, 10.1, 50.1]).expect("bbox")),
            ..Criteria::default()
        };
        index.insert(sub(1, by_route.clone(), true, false));
        index.insert(sub(2, by_box, true, false));
        index.insert(sub(3, elsewhere, true, false));
        index.insert(sub(4, Criteria::default(), false, true)); // events only
        let mut out = Vec::new();
        index.state_targets(&state("bus-1", "R1", -16.92, 145.77), &mut out);
        let mut ids: Vec<u64> = out.iter().map(|(c, _)| c.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2]);
        assert!(
            index.all_events.len() == 1 && index.wide.is_empty(),
            "events-only subs are not checked for states"
        );

        index.remove(1, 0, &Arc::new(by_route), true);
        out.clear();
        index.state_targets(&state("bus-1", "R1", -16.92, 145.77), &mut out);
        assert_eq!(out.iter().map(|(c, _)| c.id).collect::<Vec<_>>(), vec![2]);
        assert!(!index.by_route.contains_key("R1"));
    }

    /// `state_targets_with_prev` finds exactly the union of the two states' targets, each once,
    /// whether the vehicle stays in its lists or changes route and cell.
    #[test]
    fn targets_with_prev_are_the_union_of_both_states_once() {
        let mut index = SubIndex::new(Grid::new(0.05), 1024);
        let route = |r: &str| Criteria {
            route: Some(Arc::from(r)),
            ..Criteria::default()
        };
        let bbox = |b: [f64; 4]| Criteria {
            bbox: Some(Bbox::new(b).expect("bbox")),
            ..Criteria::default()
        };
        index.insert(sub(1, route("R1"), true, false));
        index.insert(sub(2, route("R2"), true, false));
        // Covers both positions below, filed under several cells.
        index.insert(sub(3, bbox([145.7, -17.0, 145.9, -16.8]), true, false));
        // Covers only the first position.
        index.insert(sub(4, bbox([145.76, -16.93, 145.78, -16.91]), true, false));
        index.insert(sub(5, Criteria::default(), true, false)); // wide: everything
        index.insert(sub(6, route("R3"), true, false));
        let ids = |s: &VehicleState, prev: Option<&VehicleState>| {
            let mut out = Vec::new();
            index.state_targets_with_prev(s, prev, &mut out);
            let mut ids: Vec<u64> = out.iter().map(|(c, _)| c.id).collect();
            ids.sort_unstable();
            ids
        };
        let a = state("bus-1", "R1", -16.92, 145.77);
        let same = state("bus-1", "R1", -16.9201, 145.7701);
        let moved = state("bus-1", "R2", -16.85, 145.85);
        assert_eq!(ids(&a, None), vec![1, 3, 4, 5]);
        assert_eq!(ids(&same, Some(&a)), vec![1, 3, 4, 5]);
        // Leaving route R1 and bbox 4: both still get this one last state; 3 and 5 once.
        assert_eq!(ids(&moved, Some(&a)), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&moved, Some(&moved)), vec![2, 3, 5]);
    }

    /// `may_want` is "yes" for every state a subscription of states could take: its vehicle,
    /// route or trip, any vehicle once a bbox or a wide one is filed; "no" otherwise, and
    /// always "no" with only events-only subscriptions.
    #[test]
    fn may_want_covers_every_state_some_subscription_could_take() {
        let mut index = SubIndex::new(Grid::new(0.05), 1024);
        index.insert(sub(1, Criteria::default(), false, true)); // events of everything
        assert!(!index.may_want("bus-1", Some("R1"), None));
        assert!(!index.files_routes_or_trips());
        let by = |vehicle: Option<&str>, route: Option<&str>, trip: Option<&str>| Criteria {
            vehicle: vehicle.map(Arc::from),
            route: route.map(Arc::from),
            trip: trip.map(Arc::from),
            ..Criteria::default()
        };
        index.insert(sub(2, by(Some("bus-1"), None, None), true, false));
        assert!(!index.files_routes_or_trips());
        index.insert(sub(3, by(None, Some("R1"), None), true, false));
        index.insert(sub(4, by(None, None, Some("T1")), true, false));
        assert!(index.files_routes_or_trips());
        assert!(index.may_want("bus-1", None, None), "its vehicle");
        assert!(!index.may_want("bus-2", None, None));
        assert!(index.may_want("bus-2", Some("R1"), None), "on R1");
        assert!(index.may_want("bus-2", None, Some("T1")), "on T1");
        assert!(!index.may_want("bus-2", Some("R2"), Some("T2")));
        let bbox = Criteria {
            bbox: Some(Bbox::new([10.0, 50.0, 10.1, 50.1]).expect("bbox")),
            ..Criteria::default()
        };
        index.insert(sub(5, bbox.clone(), true, false));
        assert!(
            index.may_want("bus-2", None, None),
            "any vehicle may enter a bbox"
        );
        index.remove(5, 0, &Arc::new(bbox), true);
        assert!(!index.may_want("bus-2", None, None));
        index.insert(sub(6, Criteria::default(), true, false));
        assert!(
            index.may_want("bus-2", None, None),
            "a subscription to everything"
        );
    }
}
