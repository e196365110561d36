//! Timetables and schedule adherence (docs/gtfs-realtime.md), from a GTFS feed's `stop_times`,
//! `calendar` and `calendar_dates`. Pure: every function takes the fix time it needs.
//!
//! # Layout
//! - [`timetable`]: [`Schedule`], every trip's stop times, compactly (shared stop patterns).
//! - [`calendar`]: service days and their start in the agency's time zone.
//! - [`predict`]: delay at a place and time; predicted times at the remaining stops.
//! - [`infer`]: the trip of a route that best fits a vehicle naming no trip.
//! - [`locate`]: progress along a trip's own corridor.
//! - [`tracking`]: per-vehicle trip state ([`TripTracking`], [`TripFit`]).

pub mod calendar;
pub mod infer;
pub mod locate;
pub mod predict;
pub mod timetable;
pub mod tracking;

pub use predict::StopPrediction;
pub use timetable::{MadeTrip, Pattern, Schedule, StopTime, Trip};
pub use tracking::{FixOnRoute, TripFit, TripTracking};

impl crate::network::Network {
    /// This network with `schedule` as its timetable (one made with [`Schedule::from_trips`]).
    pub fn with_schedule(mut self, schedule: Schedule) -> crate::network::Network {
        self.schedule = Some(std::sync::Arc::new(schedule));
        self
    }

    /// This network without its timetables (to measure what schedule matching costs).
    pub fn without_schedule(&self) -> crate::network::Network {
        let mut net = self.clone();
        net.schedule = None;
        net
    }
}
