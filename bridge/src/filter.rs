//! What a subscription or a query selects: a conjunction of optional vehicle, route, trip and bbox
//! criteria, checked against states and events.

use std::sync::Arc;

use geo_engine::{Event, VehicleState};

use crate::grid::Bbox;

/// Selects vehicles; every criterion given must hold (none given: everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Criteria {
    /// Exactly this vehicle id.
    pub vehicle: Option<Arc<str>>,
    /// Vehicles whose state names this route.
    pub route: Option<Arc<str>>,
    /// Vehicles whose state names this trip.
    pub trip: Option<Arc<str>>,
    /// Vehicles whose smoothed position lies inside.
    pub bbox: Option<Bbox>,
}

impl Criteria {
    /// Whether no criterion is given.
    pub fn is_empty(&self) -> bool {
        self.vehicle.is_none() && self.route.is_none() && self.trip.is_none() && self.bbox.is_none()
    }

    /// Whether a state passes every criterion.
    pub fn matches_state(&self, s: &VehicleState) -> bool {
        self.matches(
            &s.vehicle,
            s.route.as_deref(),
            s.trip.as_deref(),
            s.lat,
            s.lon,
        )
    }

    /// Whether an event passes; `route` and `trip` are the event's own or, failing that, those of
    /// the vehicle's latest state.
    pub fn matches_event(&self, e: &Event, route: Option<&str>, trip: Option<&str>) -> bool {
        self.matches(&e.vehicle, route, trip, e.lat, e.lon)
    }

    fn matches(
        &self,
        vehicle: &str,
        route: Option<&str>,
        trip: Option<&str>,
        lat: f64,
        lon: f64,
    ) -> bool {
        fn eq(want: &Option<Arc<str>>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        eq(&self.vehicle, Some(vehicle))
            && eq(&self.route, route)
            && eq(&self.trip, trip)
            && self.bbox.is_none_or(|b| b.contains(lat, lon))
    }
}
