//! Schedule adherence and predictions along one trip.
//!
//! - [`delay_at`]: how late (positive) or early a vehicle `progress` metres along the trip's
//!   corridor at a given time is, against the scheduled time at that place (linear between
//!   stops; a vehicle at a stop between its arrival and departure times is on time).
//! - [`predict`]: arrival and departure at every remaining stop. The current delay is carried
//!   forward; at a timepoint an early vehicle waits for the scheduled departure, and a late one
//!   makes up at most the scheduled dwell/recovery time there. Each stop's arrival is at least
//!   a second after the previous stop's departure, and none lies before the vehicle's own time.

use super::timetable::{Pattern, StopTime};

/// The delay, seconds, of a vehicle at `progress_m` along `pattern` at `t_s` seconds after the
/// service day's start. `stop_radius_m` decides when the vehicle counts as at a stop.
pub fn delay_at(
    pattern: &Pattern,
    times: &[StopTime],
    progress_m: f64,
    t_s: f64,
    stop_radius_m: f64,
) -> Option<f64> {
    let prog = &pattern.progress_m;
    if prog.len() < 2 || times.len() != prog.len() {
        return None;
    }
    let p = progress_m as f32;
    let near = |k: usize| (prog[k] - p).abs() as f64 <= stop_radius_m;
    let at_stop = |k: usize| {
        let s = times[k];
        t_s - t_s.clamp(s.arrival as f64, s.departure as f64)
    };
    // The first stop whose progress is beyond the vehicle.
    let j = prog.partition_point(|&x| x <= p);
    if j == 0 {
        // Before the first stop: waiting at the terminal before departure is on time.
        return Some(if near(0) {
            at_stop(0)
        } else {
            (t_s - times[0].departure as f64).max(0.0)
        });
    }
    let i = j - 1;
    if near(i) {
        return Some(at_stop(i));
    }
    if j == prog.len() {
        return Some(t_s - times[i].arrival as f64);
    }
    if near(j) {
        return Some(at_stop(j));
    }
    let span = (prog[j] - prog[i]).max(1e-3) as f64;
    let frac = ((p - prog[i]) as f64 / span).clamp(0.0, 1.0);
    let (dep, arr) = (times[i].departure as f64, times[j].arrival as f64);
    Some(t_s - (dep + frac * (arr - dep)))
}

/// A predicted stop, times in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPrediction {
    /// Index of the stop in the trip's pattern.
    pub index: usize,
    pub arrival_ms: i64,
    pub departure_ms: i64,
    /// Predicted minus scheduled arrival, seconds.
    pub delay_s: i32,
}

/// Predictions for the stops `from..` of a trip whose service day starts at `day_start_ms`,
/// for a vehicle `delay_s` late now (`now_ms`, its fix time).
pub fn predict(
    pattern: &Pattern,
    times: &[StopTime],
    from: usize,
    day_start_ms: i64,
    delay_s: f64,
    now_ms: i64,
) -> Vec<StopPrediction> {
    let n = times.len().min(pattern.timepoints.len());
    let mut out = Vec::with_capacity(n.saturating_sub(from));
    let mut d = delay_s;
    let mut floor = now_ms;
    for (k, s) in times.iter().enumerate().take(n).skip(from) {
        let sched_arr = day_start_ms + s.arrival as i64 * 1000;
        let sched_dep = day_start_ms + s.departure as i64 * 1000;
        let arrival_ms = (sched_arr + (d * 1000.0) as i64).max(floor);
        let departure_ms = if pattern.timepoints[k] {
            // Early: hold to the timetable. Late: the dwell is cut to nothing, so lateness
            // shrinks by the scheduled dwell/recovery at this stop.
            arrival_ms.max(sched_dep)
        } else {
            sched_dep + (d * 1000.0) as i64
        }
        .max(arrival_ms);
        d = (departure_ms - sched_dep) as f64 / 1000.0;
        // Strictly later at each next stop, by a second at least: timetables often give
        // neighbouring stops the same minute, and GTFS-Realtime consumers and validators want
        // times that increase along the trip.
        floor = departure_ms + 1000;
        out.push(StopPrediction {
            index: k,
            arrival_ms,
            departure_ms,
            delay_s: ((arrival_ms - sched_arr) / 1000) as i32,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(tp: bool) -> (Pattern, Vec<StopTime>) {
        let p = Pattern {
            corridor: 0,
            stops: vec![0, 1, 2, 3],
            sequences: vec![1, 2, 3, 4],
            timepoints: vec![tp; 4],
            progress_m: vec![0.0, 1000.0, 2000.0, 3000.0],
        };
        let t = [(0, 0), (100, 160), (260, 260), (360, 360)]
            .map(|(a, d)| StopTime {
                arrival: a,
                departure: d,
            })
            .to_vec();
        (p, t)
    }

    #[test]
    fn delay_between_and_at_stops() {
        let (p, t) = pattern(true);
        // Half-way between stop 0 (dep 0) and stop 1 (arr 100), at 170 s: 120 s late.
        assert_eq!(delay_at(&p, &t, 500.0, 170.0, 30.0), Some(120.0));
        // At stop 1 between its arrival and departure: on time.
        assert_eq!(delay_at(&p, &t, 1005.0, 130.0, 30.0), Some(0.0));
        // At stop 1 after its departure time: late by the difference.
        assert_eq!(delay_at(&p, &t, 1005.0, 200.0, 30.0), Some(40.0));
        // Waiting before the first stop ahead of departure: on time.
        assert_eq!(delay_at(&p, &t, -100.0, -50.0, 30.0), Some(0.0));
    }

    #[test]
    fn late_vehicle_recovers_at_timepoints_and_early_one_waits() {
        let (p, t) = pattern(true);
        let late = predict(&p, &t, 1, 0, 120.0, 0);
        // Arrives 120 s late at stop 1, dwell of 60 s absorbed: 60 s late after it.
        assert_eq!(late[0].arrival_ms, 220_000);
        assert_eq!(late[0].departure_ms, 220_000);
        assert_eq!(late[1].arrival_ms, 320_000);
        let early = predict(&p, &t, 1, 0, -50.0, 0);
        assert_eq!(early[0].arrival_ms, 50_000);
        assert_eq!(early[0].departure_ms, 160_000);
        assert_eq!(early[1].arrival_ms, 260_000);
        let (p, t) = pattern(false);
        let free = predict(&p, &t, 1, 0, 120.0, 0);
        assert_eq!(free[2].arrival_ms, 480_000);
    }

    #[test]
    fn predictions_never_decrease_nor_precede_now() {
        let (p, t) = pattern(false);
        let out = predict(&p, &t, 0, 0, -500.0, 50_000);
        let mut last = 50_000;
        for s in &out {
            assert!(s.arrival_ms >= last && s.departure_ms >= s.arrival_ms);
            last = s.departure_ms + 1000;
        }
    }
}
