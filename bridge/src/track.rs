//! The compact in-memory track kept per vehicle for `/track` when the broker has no durable store:
//! one [`TrackPoint`] per processed state (about 64 bytes plus its route and trip ids instead of a whole state), at most
//! `track_capacity` per vehicle and at most `track_budget` over all vehicles.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use geo_engine::{VehicleState, VehicleStatus};
use serde::Serialize;

/// One processed fix as `/track` returns it (absent values omitted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackPoint {
    /// Device time, Unix milliseconds.
    pub ts: i64,
    /// Smoothed position, degrees.
    pub lat: f64,
    /// Smoothed position, degrees.
    pub lon: f64,
    /// Metres per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
    /// Degrees clockwise from north.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<f32>,
    /// Motion status.
    pub status: VehicleStatus,
    /// Inside the route corridor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_route: Option<bool>,
    /// Cross-track distance, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_route_m: Option<f32>,
    /// Distance along the route, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_m: Option<f32>,
    /// The route the vehicle ran (riders of a route read only its fixes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// The trip the vehicle ran (riders of a trip read only its fixes, docs/security.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip: Option<Arc<str>>,
}

impl From<&VehicleState> for TrackPoint {
    fn from(s: &VehicleState) -> Self {
        // f32 keeps centimetres on a 100 km route and is plenty for speeds and bearings.
        let f = |v: Option<f64>| v.map(|x| x as f32);
        TrackPoint {
            ts: s.ts,
            lat: s.lat,
            lon: s.lon,
            speed: f(s.speed),
            heading: f(s.heading),
            status: s.status,
            on_route: s.on_route,
            off_route_m: f(s.off_route_m),
            progress_m: f(s.progress_m),
            // Shared with the state (and with every point of the same route and trip).
            route: s.route.clone(),
            trip: s.trip.clone(),
        }
    }
}

/// Limits shared by every vehicle's ring.
#[derive(Debug)]
pub struct TrackLimits {
    /// Points per vehicle.
    pub capacity: usize,
    /// Points over all vehicles; past it, a vehicle drops its oldest point for each new one.
    pub budget: usize,
    /// Points held now.
    pub held: AtomicUsize,
}

/// One vehicle's recent points, oldest first.
#[derive(Debug, Default)]
pub struct Ring(VecDeque<TrackPoint>);

impl Ring {
    /// Appends a point, dropping the oldest when the vehicle's capacity or the global budget is
    /// reached.
    pub fn push(&mut self, p: TrackPoint, limits: &TrackLimits) {
        if limits.capacity == 0 {
            return;
        }
        let full =
            self.0.len() >= limits.capacity || limits.held.load(Ordering::Relaxed) >= limits.budget;
        if full && self.0.pop_front().is_some() {
            limits.held.fetch_sub(1, Ordering::Relaxed);
        }
        self.0.push_back(p);
        limits.held.fetch_add(1, Ordering::Relaxed);
    }

    /// Points with `from <= ts <= to`, oldest first: the most recent `max` of them.
    pub fn range(&self, from: i64, to: i64, max: usize) -> Vec<TrackPoint> {
        let mut out: Vec<TrackPoint> = self
            .0
            .iter()
            .rev()
            .filter(|p| p.ts >= from && p.ts <= to)
            .take(max)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: i64) -> TrackPoint {
        TrackPoint {
            ts,
            lat: 1.0,
            lon: 2.0,
            speed: Some(8.25),
            heading: None,
            status: VehicleStatus::Moving,
            on_route: None,
            off_route_m: None,
            progress_m: None,
            route: None,
            trip: Some("T1".into()),
        }
    }

    #[test]
    fn capacity_and_budget_bound_the_rings() {
        let limits = TrackLimits {
            capacity: 3,
            budget: 5,
            held: AtomicUsize::new(0),
        };
        let (mut a, mut b) = (Ring::default(), Ring::default());
        for ts in 0..10 {
            a.push(point(ts), &limits);
        }
        assert_eq!(
            a.range(i64::MIN, i64::MAX, 100)
                .iter()
                .map(|p| p.ts)
                .collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        for ts in 0..10 {
            b.push(point(ts), &limits);
        }
        // The budget (5) is reached once b holds 2: from then on each new point replaces b's oldest.
        assert_eq!(limits.held.load(Ordering::Relaxed), 5);
        let b_ts: Vec<i64> = b
            .range(i64::MIN, i64::MAX, 100)
            .iter()
            .map(|p| p.ts)
            .collect();
        assert_eq!(b_ts, vec![8, 9]);
        assert_eq!(a.range(8, 9, 100).len(), 2);
        assert_eq!(
            a.range(i64::MIN, i64::MAX, 1)
                .iter()
                .map(|p| p.ts)
                .collect::<Vec<_>>(),
            vec![9]
        );
        let json = serde_json::to_string(&point(1)).expect("json");
        assert_eq!(
            json,
            r#"{"ts":1,"lat":1.0,"lon":2.0,"speed":8.25,"status":"moving","trip":"T1"}"#
        );
    }
}
