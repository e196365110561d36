//! Which trip each vehicle runs now, and when finished trips ended ([`TripBook`]): the facts
//! behind a rider's scope (docs/security.md, issue 19). A rider of a trip reads the vehicle running
//! it while it runs (over MQTT, WebSocket, SSE and REST), and that trip's stored fixes (`/track`)
//! until `--trip-ttl` after the vehicle moved on to another trip or to none.
//!
//! Fed as a [`StateSink`] from the ingest path, before the state's messages are routed, so the
//! first state of a new trip is already judged by the new trip. A vehicle going offline does
//! not end its trip (its riders still see the `offline` event); the next state with another
//! trip does.
//!
//! Bounded: one entry per vehicle with a state, and at most [`ENDED_MAX`] ended trips, each
//! forgotten once its TTL has passed (a forgotten trip is unreadable, so dropping the oldest
//! when full fails closed).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use geo_engine::{Event, VehicleState};

use crate::hash::FastMap;
use crate::ingest::StateSink;

/// Ended trips remembered at most; past this the oldest is forgotten early (unreadable).
pub const ENDED_MAX: usize = 100_000;

/// The vehicle ↔ trip facts; cheap to read from the router and the bridge (one read lock, one
/// hash lookup).
#[derive(Debug)]
pub struct TripBook {
    ttl: Duration,
    inner: RwLock<Inner>,
}

/// A vehicle's current route and trip.
type Running = (Option<Arc<str>>, Option<Arc<str>>);

#[derive(Debug, Default)]
struct Inner {
    /// Per vehicle: its current route and trip.
    current: FastMap<Arc<str>, Running>,
    /// Per running trip: how many vehicles run it now.
    running: FastMap<Arc<str>, usize>,
    /// Per ended trip: when it ended; `order` holds the same, oldest first.
    ended: FastMap<Arc<str>, Instant>,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl TripBook {
    /// A book whose ended trips stay readable for `ttl` (`--trip-ttl`).
    pub fn new(ttl: Duration) -> TripBook {
        TripBook {
            ttl,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// Records `vehicle`'s latest route and trip at `now`; a trip it no longer runs ends.
    pub fn observe(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>, now: Instant) {
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some((r, t)) = inner.current.get(vehicle)
                && r.as_deref() == route
                && t.as_deref() == trip
            {
                return; // the common case: nothing changed
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let new = (route.map(Arc::from), trip.map(Arc::from));
        let old = inner.current.insert(Arc::from(vehicle), new.clone());
        if let Some(t) = &new.1 {
            *inner.running.entry(t.clone()).or_insert(0) += 1;
            inner.ended.remove(t);
        }
        if let Some(t) = old.and_then(|(_, t)| t) {
            let left = inner.running.get_mut(&t).map(|n| {
                *n -= 1;
                *n
            });
            if left == Some(0) {
                inner.running.remove(&t);
                inner.end(t, now, self.ttl);
            }
        }
    }

    /// Whether `vehicle` runs `trip` or a route in `routes`, or a trip in `trips`, now.
    pub fn runs_any(&self, vehicle: &str, routes: &[String], trips: &[String]) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.current.get(vehicle).is_some_and(|(r, t)| {
            let listed = |l: &[String], x: &Option<Arc<str>>| {
                x.as_deref().is_some_and(|x| l.iter().any(|i| i == x))
            };
            listed(routes, r) || listed(trips, t)
        })
    }

    /// Whether `trip`'s data is readable to its riders at `now`: it runs, or it ended less than
    /// the TTL ago. An unknown trip is not readable.
    pub fn readable(&self, trip: &str, now: Instant) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.running.contains_key(trip)
            || inner
                .ended
                .get(trip)
                .is_some_and(|&at| now.duration_since(at) < self.ttl)
    }
}

impl Inner {
    fn end(&mut self, trip: Arc<str>, now: Instant, ttl: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ttl && self.order.len() < ENDED_MAX {
                break;
            }
            if let Some((at, t)) = self.order.pop_front()
                && self.ended.get(&t) == Some(&at)
            {
                self.ended.remove(&t);
            }
        }
        self.ended.insert(trip.clone(), now);
        self.order.push_back((now, trip));
    }
}

/// The book learns each processed state as it is made.
pub struct TripSink(pub Arc<TripBook>);

impl StateSink for TripSink {
    fn state(&self, state: &Arc<VehicleState>) {
        self.0.observe(
            &state.vehicle,
            state.route.as_deref(),
            state.trip.as_deref(),
            Instant::now(),
        );
    }

    fn event(&self, _: &Arc<Event>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trip_runs_then_stays_readable_for_the_ttl() {
        let book = TripBook::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let trips = ["T1".to_owned()];
        assert!(!book.readable("T1", t0), "unknown trip");
        book.observe("bus-1", Some("R1"), Some("T1"), t0);
        assert!(book.runs_any("bus-1", &[], &trips) && book.readable("T1", t0));
        assert!(book.runs_any("bus-1", &["R1".into()], &[]));
        book.observe("bus-1", Some("R1"), Some("T2"), t0);
        assert!(!book.runs_any("bus-1", &[], &trips), "ended");
        assert!(book.readable("T1", t0 + Duration::from_secs(59)));
        assert!(!book.readable("T1", t0 + Duration::from_secs(60)));
        // Back on T1: runs again.
        book.observe("bus-1", None, Some("T1"), t0);
        assert!(book.readable("T1", t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn ended_trips_are_bounded() {
        let book = TripBook::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..ENDED_MAX + 10 {
            book.observe("bus", None, Some(&format!("T{i}")), t0);
        }
        let inner = book.inner.read().expect("lock");
        assert!(inner.ended.len() <= ENDED_MAX && inner.order.len() <= ENDED_MAX);
        drop(inner);
        assert!(
            !book.readable("T0", t0),
            "the oldest was forgotten: unreadable"
        );
        assert!(book.readable(&format!("T{}", ENDED_MAX + 8), t0));
    }
}
