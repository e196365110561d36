//! Trip inference: the scheduled trip of a route that best fits a vehicle that names its route
//! but not its trip. A candidate's corridor passes within the corridor width of the vehicle
//! (its progress there, with the time, tells direction and which run), it runs on a service date whose calendar includes it, and is scheduled around the fix
//! time; the one with the smallest absolute delay at the vehicle's progress wins.

use jiff::ToSpan;

use super::calendar::{day_start_ms, local_date, yyyymmdd};
use super::locate::locate;
use super::predict::delay_at;
use super::timetable::Schedule;
use crate::local::Local;
use crate::network::Network;

/// A candidate is considered from this long before its first departure, seconds.
const BEFORE_START_S: f64 = 15.0 * 60.0;
/// ...until this long after its last arrival, seconds.
const AFTER_END_S: f64 = 30.0 * 60.0;
/// A fit further off schedule than this is no fit, seconds.
const MAX_DELAY_S: f64 = 30.0 * 60.0;
/// The vehicle must be within this distance of the trip's span of the corridor, metres.
const SPAN_SLACK_M: f64 = 300.0;

/// The trip chosen for a vehicle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub trip: u32,
    /// Service date, `YYYYMMDD`.
    pub start_date: u32,
    /// Start of that service day, Unix ms.
    pub day_start_ms: i64,
    pub delay_s: f64,
}

/// The trip of network route `route` that best fits a vehicle at network-local point `p` at
/// `ts` (Unix ms), if any. A trip's corridor must pass within `width_m` of the vehicle.
pub fn infer(
    sched: &Schedule,
    net: &Network,
    route: usize,
    p: Local,
    width_m: f64,
    ts: i64,
    stop_radius_m: f64,
) -> Option<Candidate> {
    let today = local_date(&sched.tz, ts)?;
    let mut best: Option<Candidate> = None;
    // Progress on each corridor the route's trips follow, located once.
    let mut located: Vec<(u32, Option<f64>)> = Vec::new();
    let mut progress_on = |ci: u32| -> Option<f64> {
        if let Some(&(_, p)) = located.iter().find(|(c, _)| *c == ci) {
            return p;
        }
        let hit = net
            .corridors()
            .get(ci as usize)
            .and_then(|c| locate(c, p, None, width_m))
            .filter(|&(off, _)| off <= width_m)
            .map(|(_, prog)| prog);
        located.push((ci, hit));
        hit
    };
    // Yesterday's service day holds the trips running past midnight (times over 24 h).
    for date in [today, today.checked_sub(1.day()).ok()?] {
        let Some(day0) = day_start_ms(&sched.tz, date) else {
            continue;
        };
        let t_s = (ts - day0) as f64 / 1000.0;
        for &t in sched.route_trips(route) {
            let trip = &sched.trips[t as usize];
            let Some(pattern) = sched.pattern(t) else {
                continue;
            };
            let times = sched.times(t);
            let (Some(first), Some(last)) = (times.first(), times.last()) else {
                continue;
            };
            if t_s < first.departure as f64 - BEFORE_START_S
                || t_s > last.arrival as f64 + AFTER_END_S
                || !sched.calendar.runs(trip.service, date)
            {
                continue;
            }
            let Some(progress_m) = progress_on(pattern.corridor) else {
                continue;
            };
            let (p0, p1) = (
                pattern.progress_m[0] as f64,
                pattern.progress_m[pattern.progress_m.len() - 1] as f64,
            );
            if progress_m < p0 - SPAN_SLACK_M || progress_m > p1 + SPAN_SLACK_M {
                continue;
            }
            let Some(delay) = delay_at(pattern, times, progress_m, t_s, stop_radius_m) else {
                continue;
            };
            if delay.abs() > MAX_DELAY_S {
                continue;
            }
            if best.is_none_or(|b| delay.abs() < b.delay_s.abs()) {
                best = Some(Candidate {
                    trip: t,
                    start_date: yyyymmdd(date),
                    day_start_ms: day0,
                    delay_s: delay,
                });
            }
        }
    }
    best
}

/// The service date on which declared trip `t` runs around `ts`: today's or yesterday's (local)
/// whichever has the trip scheduled closest to `ts`, preferring dates the calendar includes.
pub fn service_date_of(sched: &Schedule, t: u32, ts: i64) -> Option<(u32, i64)> {
    let trip = sched.trips.get(t as usize)?;
    let times = sched.times(t);
    let (first, last) = (times.first()?, times.last()?);
    let today = local_date(&sched.tz, ts)?;
    let mut best: Option<(bool, f64, u32, i64)> = None;
    for date in [
        today,
        today.checked_sub(1.day()).ok()?,
        today.checked_add(1.day()).ok()?,
    ] {
        let Some(day0) = day_start_ms(&sched.tz, date) else {
            continue;
        };
        let t_s = (ts - day0) as f64 / 1000.0;
        let off = if t_s < first.departure as f64 {
            first.departure as f64 - t_s
        } else {
            (t_s - last.arrival as f64).max(0.0)
        };
        let runs = sched.calendar.runs(trip.service, date);
        let key = (runs, -off);
        if best.is_none_or(|b| key > (b.0, b.1)) {
            best = Some((runs, -off, yyyymmdd(date), day0));
        }
    }
    best.map(|b| (b.2, b.3))
}
