//! The demo's timetable, so that a first-time visitor sees delays, scheduled times and ETAs
//! without a GTFS feed. Every leg a bus drives (one corridor, one lap) is a trip named
//! `"{bus}/{corridor}-{lap}"`, what the bus declares in its fixes, over the corridor's stops:
//!
//! - an on-time bus's timetable is its own simulated run (delay about zero);
//! - the late bus's is the run of an on-time bus (its nominal speed and dwell) that reaches the
//!   first stop after the demo's start (on later legs: the leg's first stop) [`LATE_START_S`]
//!   earlier than it does: it shows about three minutes late at once and falls further behind
//!   along the leg; the next leg's timetable starts again when it gets there, as a real
//!   schedule's layover at the terminus absorbs lateness.
//!
//! Made once at start for the first [`HORIZON_MS`] of the demo (then the buses run on without
//! one); times count from each trip's UTC date.

use geo_engine::schedule::calendar::day_start_ms;
use geo_engine::schedule::{MadeTrip, Schedule, StopTime};
use geo_engine::{Network, SimConfig, SimFix, Simulator};
use jiff::tz::TimeZone;

/// How long the timetable covers from the demo's start, ms.
pub const HORIZON_MS: i64 = 3 * 3600 * 1000;
/// How late the late bus is at the start of each leg, seconds.
pub const LATE_START_S: i64 = 180;
/// A stop counts as reached within this much progress, metres.
const AT_STOP_M: f64 = 0.5;

/// One leg of a run: its trip id (as the simulator names it), corridor, and per stop of the
/// corridor the arrival and departure, Unix ms.
struct Leg {
    trip: String,
    corridor: usize,
    start_ms: i64,
    stops: Vec<(i64, i64)>,
}

/// A leg being driven and the stops reached on it so far.
type Open = (Leg, Vec<Option<(i64, i64)>>);

/// Keeps a leg if every stop of it was reached.
fn finish(cur: Option<Open>, out: &mut Vec<Leg>) {
    if let Some((mut leg, seen)) = cur
        && let Some(stops) = seen.into_iter().collect::<Option<Vec<_>>>()
    {
        leg.stops = stops;
        out.push(leg);
    }
}

/// The legs of `cfg`'s run that are complete by `until_ms`.
fn legs(net: &Network, cfg: SimConfig, until_ms: i64) -> Vec<Leg> {
    let Some(sim) = Simulator::new(net, cfg) else {
        return Vec::new();
    };
    let mut out: Vec<Leg> = Vec::new();
    let mut cur: Option<Open> = None;
    for f in sim.take_while(|f| f.fix.ts <= until_ms) {
        let SimFix {
            fix,
            progress_m,
            corridor,
            deadhead,
            ..
        } = f;
        if deadhead {
            continue;
        }
        let Some(trip) = fix.trip else { continue };
        if cur.as_ref().is_none_or(|(l, _)| l.trip != trip) {
            finish(cur.take(), &mut out);
            let n = net.corridors().get(corridor).map_or(0, |c| c.stops.len());
            cur = Some((
                Leg {
                    trip,
                    corridor,
                    start_ms: fix.ts,
                    stops: Vec::new(),
                },
                vec![None; n],
            ));
        }
        let Some((_, seen)) = cur.as_mut() else {
            continue;
        };
        let Some(c) = net.corridors().get(corridor) else {
            continue;
        };
        for (k, cs) in c.stops.iter().enumerate() {
            if progress_m >= cs.progress_m - AT_STOP_M {
                // Reached: arrival once; departure the last fix still at it.
                let s = seen[k].get_or_insert((fix.ts, fix.ts));
                if progress_m <= cs.progress_m + AT_STOP_M {
                    s.1 = fix.ts;
                }
            }
        }
    }
    // The leg in progress at the horizon is incomplete unless every stop was reached.
    finish(cur, &mut out);
    out
}

/// The trips of one bus running `actual` (its fixes name `"{bus}/{trip}"`) from `t0_ms` to
/// `until_ms`; with `nominal` the bus is the late one and its timetable is `nominal`'s pace,
/// [`LATE_START_S`] ahead of it at the first stop it reaches after `t0_ms`.
pub fn trips(
    net: &Network,
    bus: &str,
    actual: &SimConfig,
    nominal: Option<&SimConfig>,
    (t0_ms, until_ms): (i64, i64),
) -> Vec<MadeTrip> {
    let run = legs(net, actual.clone(), until_ms);
    // Per corridor, the nominal stop times as offsets from the leg's start.
    let pace: Vec<(usize, Vec<(i64, i64)>)> = nominal
        .map(|n| {
            let one = SimConfig {
                laps: Some(1),
                detour: None,
                ..n.clone()
            };
            legs(net, one, i64::MAX)
                .into_iter()
                .map(|l| {
                    let s = l.start_ms;
                    let offsets = l.stops.iter().map(|&(a, d)| (a - s, d - s)).collect();
                    (l.corridor, offsets)
                })
                .collect()
        })
        .unwrap_or_default();
    let tz = TimeZone::UTC;
    run.into_iter()
        .filter_map(|leg| {
            let stops: Vec<(i64, i64)> = if nominal.is_some() {
                let (_, offsets) = pace.iter().find(|(c, _)| *c == leg.corridor)?;
                let k = leg.stops.iter().position(|s| s.0 >= t0_ms).unwrap_or(0);
                let start = leg.stops.get(k)?.0 - LATE_START_S * 1000 - offsets.get(k)?.0;
                offsets
                    .iter()
                    .map(|&(a, d)| (start + a, start + d))
                    .collect()
            } else {
                leg.stops
            };
            let first = stops.first()?.0;
            let date = tz
                .to_datetime(jiff::Timestamp::from_millisecond(first).ok()?)
                .date();
            let day0 = day_start_ms(&tz, date)?;
            let secs = |ms: i64| u32::try_from((ms - day0).div_euclid(1000)).ok();
            let times = stops
                .iter()
                .map(|&(a, d)| {
                    Some(StopTime {
                        arrival: secs(a)?,
                        departure: secs(d)?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(MadeTrip {
                id: format!("{bus}/{}", leg.trip),
                corridor: leg.corridor,
                date,
                times,
            })
        })
        .collect()
}

/// The timetable of every bus's trips, on `net`.
pub fn schedule(net: &Network, trips: Vec<MadeTrip>) -> Option<Schedule> {
    Schedule::from_trips(net, TimeZone::UTC, trips)
}
