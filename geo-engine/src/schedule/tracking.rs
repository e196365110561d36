//! Per-vehicle trip state: which scheduled trip a vehicle runs (declared, or inferred from its
//! route, place and time and then kept until the trip ends), how late it is and which stops
//! remain. Plain data, snapshotted with the tracker.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::infer::{infer, service_date_of};
use super::locate::locate;
use super::predict::{StopPrediction, delay_at, predict};
use super::timetable::Schedule;
use crate::local::Local;
use crate::network::Network;
use crate::state::NextStop;

/// A failed inference is retried at most this often (fix time), ms: a bus out of service hours
/// costs one scan of its route's trips every 30 s, not one per fix.
const RETRY_MS: i64 = 30_000;
/// An inferred trip ends this long after its scheduled end plus the vehicle's delay, ms.
const END_GRACE_MS: i64 = 20 * 60 * 1000;

/// The trip a vehicle runs and how it keeps to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripFit {
    /// Index into [`Schedule::trips`].
    pub trip: u32,
    /// Its `trip_id`, to notice another timetable after a restore.
    pub trip_id: Arc<str>,
    /// Chosen by fleetmq, not named by the vehicle.
    pub inferred: bool,
    /// Service date, `YYYYMMDD` (GTFS-Realtime `start_date`).
    pub start_date: u32,
    /// Start of the service day, Unix ms.
    pub day_start_ms: i64,
    /// Seconds late (negative: early) at the last fix on the trip's corridor.
    pub delay_s: Option<i32>,
    /// Progress along the trip's corridor, metres; never decreasing within the trip.
    pub progress_m: Option<f64>,
    /// Index (in the trip's pattern) of the first stop not yet left behind.
    pub next: u32,
    /// Index of the stop the vehicle is at, if any.
    pub at_stop: Option<u32>,
    /// Fix time of the last update, Unix ms.
    pub ts: i64,
    /// The vehicle reached the trip's last stop.
    pub finished: bool,
}

/// What the tracker knows of one fix.
#[derive(Debug, Clone, Copy)]
pub struct FixOnRoute<'a> {
    /// Declared route (network index).
    pub route: Option<usize>,
    /// Declared trip.
    pub trip: Option<&'a str>,
    /// The smoothed position in the network's local frame, metres.
    pub point: Local,
    /// Corridor half-width: farther from the trip's corridor, the fix says nothing of progress.
    pub width_m: f64,
    /// Fix time, Unix ms.
    pub ts: i64,
    pub stop_radius_m: f64,
    /// A backward jump larger than this along the corridor starts a new pass (ends the trip).
    pub progress_reset_m: f64,
}

/// Per-vehicle trip state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TripTracking {
    current: Option<TripFit>,
    /// Fix time of the last inference that found nothing.
    last_try_ms: Option<i64>,
}

impl TripTracking {
    /// The current fit.
    pub fn fit(&self) -> Option<&TripFit> {
        self.current.as_ref()
    }

    /// Feeds one processed fix; returns the fit after it.
    pub fn update(
        &mut self,
        sched: &Schedule,
        net: &Network,
        fix: &FixOnRoute,
    ) -> Option<&TripFit> {
        // A fit from another timetable (restored snapshot) is dropped.
        if let Some(f) = &self.current
            && sched
                .trips
                .get(f.trip as usize)
                .is_none_or(|t| *t.id != *f.trip_id)
        {
            self.current = None;
        }
        match fix.trip {
            Some(id) => self.declared(sched, id, fix.ts),
            None => self.inferred(sched, net, fix),
        }
        let f = self.current.as_ref()?;
        let pattern = sched.pattern(f.trip)?;
        let on_corridor = net
            .corridors()
            .get(pattern.corridor as usize)
            .and_then(|c| locate(c, fix.point, f.progress_m, fix.width_m))
            .filter(|&(off, _)| off <= fix.width_m);
        let new_pass = match (on_corridor, f.progress_m) {
            (Some((_, p)), Some(old)) => p < old - fix.progress_reset_m,
            _ => false,
        };
        if new_pass && f.inferred {
            // A new pass over the corridor: an inferred trip has ended.
            self.current = None;
            return None;
        }
        let f = self.current.as_mut()?;
        let times = sched.times(f.trip);
        if let Some((_, p)) = on_corridor {
            let p = match f.progress_m {
                Some(old) if !new_pass => old.max(p),
                _ => p,
            };
            f.progress_m = Some(p);
            let t_s = (fix.ts - f.day_start_ms) as f64 / 1000.0;
            f.delay_s = delay_at(pattern, times, p, t_s, fix.stop_radius_m).map(|d| d as i32);
            let r = fix.stop_radius_m as f32;
            let pf = p as f32;
            f.next = pattern.progress_m.partition_point(|&x| x < pf - r) as u32;
            f.at_stop = pattern
                .progress_m
                .get(f.next as usize)
                .filter(|&&x| (x - pf).abs() <= r)
                .map(|_| f.next);
            let last = pattern.progress_m.len() - 1;
            f.finished |= pf >= pattern.progress_m[last] - r;
        }
        f.ts = fix.ts;
        Some(f)
    }

    fn declared(&mut self, sched: &Schedule, id: &str, ts: i64) {
        if self
            .current
            .as_ref()
            .is_some_and(|f| !f.inferred && *f.trip_id == *id)
        {
            return;
        }
        self.current = sched.trip_index(id).and_then(|t| {
            let (start_date, day_start_ms) = service_date_of(sched, t, ts)?;
            Some(TripFit {
                trip: t,
                trip_id: id.into(),
                inferred: false,
                start_date,
                day_start_ms,
                delay_s: None,
                progress_m: None,
                next: 0,
                at_stop: None,
                ts,
                finished: false,
            })
        });
    }

    fn inferred(&mut self, sched: &Schedule, net: &Network, fix: &FixOnRoute) {
        if let Some(f) = &self.current {
            let trip = &sched.trips[f.trip as usize];
            let end = sched.times(f.trip).last().map_or(0, |s| s.arrival as i64) * 1000
                + f.day_start_ms
                + f.delay_s.unwrap_or(0).max(0) as i64 * 1000
                + END_GRACE_MS;
            let ended =
                !f.inferred || f.finished || fix.route != Some(trip.route as usize) || fix.ts > end;
            if !ended {
                return;
            }
            self.current = None;
        }
        let Some(route) = fix.route else {
            return;
        };
        if self
            .last_try_ms
            .is_some_and(|t| (0..RETRY_MS).contains(&(fix.ts - t)))
        {
            return;
        }
        match infer(
            sched,
            net,
            route,
            fix.point,
            fix.width_m,
            fix.ts,
            fix.stop_radius_m,
        ) {
            Some(c) => {
                self.last_try_ms = None;
                self.current = Some(TripFit {
                    trip: c.trip,
                    trip_id: sched.trips[c.trip as usize].id.as_str().into(),
                    inferred: true,
                    start_date: c.start_date,
                    day_start_ms: c.day_start_ms,
                    delay_s: Some(c.delay_s as i32),
                    progress_m: None,
                    next: 0,
                    at_stop: None,
                    ts: fix.ts,
                    finished: false,
                });
            }
            None => self.last_try_ms = Some(fix.ts),
        }
    }
}

impl TripFit {
    /// Scheduled arrival at network stop `stop_id` among the stops not yet passed, Unix ms.
    pub fn scheduled_arrival_ms(
        &self,
        sched: &Schedule,
        net: &Network,
        stop_id: &str,
    ) -> Option<i64> {
        let pattern = sched.pattern(self.trip)?;
        let times = sched.times(self.trip);
        let k = (self.next as usize..pattern.stops.len()).find(|&k| {
            net.stops()
                .get(pattern.stops[k] as usize)
                .is_some_and(|s| *s.id == *stop_id)
        })?;
        Some(self.day_start_ms + times.get(k)?.arrival as i64 * 1000)
    }

    /// Predictions for every remaining stop (from the one the vehicle is at or next reaches).
    pub fn predictions(&self, sched: &Schedule) -> Vec<StopPrediction> {
        let Some(pattern) = sched.pattern(self.trip) else {
            return Vec::new();
        };
        let times = sched.times(self.trip);
        predict(
            pattern,
            times,
            self.next as usize,
            self.day_start_ms,
            self.delay_s.unwrap_or(0) as f64,
            self.ts,
        )
    }

    /// The next `max` stops of the trip with their predictions (those of the GTFS-Realtime
    /// TripUpdate): `eta` the predicted arrival, `scheduled` the timetable's, `delay_s` the
    /// difference, `distance_m` along the trip's corridor. Empty until the vehicle is placed on
    /// the corridor.
    pub fn upcoming(&self, sched: &Schedule, net: &Network, max: usize) -> Vec<NextStop> {
        let (Some(pattern), Some(progress)) = (sched.pattern(self.trip), self.progress_m) else {
            return Vec::new();
        };
        let times = sched.times(self.trip);
        self.predictions(sched)
            .into_iter()
            .filter_map(|p| {
                let stop = net.stops().get(*pattern.stops.get(p.index)? as usize)?;
                let along = (*pattern.progress_m.get(p.index)? as f64 - progress).max(0.0);
                Some(NextStop {
                    id: stop.id.clone(),
                    name: stop.name.clone(),
                    distance_m: (along * 10.0).round() / 10.0,
                    eta: Some(p.arrival_ms),
                    scheduled: Some(self.day_start_ms + times.get(p.index)?.arrival as i64 * 1000),
                    delay_s: Some(i64::from(p.delay_s)),
                })
            })
            .take(max)
            .collect()
    }
}
