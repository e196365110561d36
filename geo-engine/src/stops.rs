//! Stage 6b, stops (docs/pipeline.md#events): arrival and departure within `stop_radius_m` of the
//! stops of the matched corridor (measured to the stop's projection on the route, see
//! [`crate::corridor::CorridorStop::at`]), the next stop ahead, and its ETA: the remaining distance
//! along the route over the recent average speed (progress made over the last `eta_window_ms`).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::config::PipelineConfig;
use crate::local::{Local, dist};
use crate::network::Network;
use crate::state::NextStop;

/// A stop event; the value is the stop's index in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopChange {
    /// Arrived at a stop.
    Arrival(usize),
    /// Left a stop.
    Departure(usize),
}

/// Most progress samples kept for the average speed, whatever the window.
const MAX_SAMPLES: usize = 256;
/// Progress samples kept per ETA window, about ([`Stops::sample`]).
const SAMPLES_PER_WINDOW: i64 = 16;
/// An average over less time than this is not trusted; the current speed is used, ms.
const MIN_SPAN_MS: i64 = 5_000;
/// Below this average speed no ETA is given, m/s.
const MIN_ETA_SPEED: f64 = 0.3;
/// Stops farther along the route than the arrival radius plus this are not candidates, metres
/// (the stop's projection may lie a little off the vehicle's progress at a corner).
const STOP_PROGRESS_SLACK_M: f64 = 50.0;

/// Per-vehicle stop state on its current corridor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stops {
    /// The corridor the indices below refer to.
    corridor: Option<usize>,
    /// Index (in the corridor's stops) of the stop the vehicle is at.
    at_stop: Option<usize>,
    /// Index of the last stop arrived at on this pass; a stop is arrived at once per pass.
    last_arrived: Option<usize>,
    /// `(ts, progress_m)` of recent on-route fixes.
    samples: VecDeque<(i64, f64)>,
}

impl Stops {
    /// Feeds one on-route fix at local position `pos`, `progress` metres along `corridor`.
    pub fn update(
        &mut self,
        net: &Network,
        corridor: usize,
        pos: Local,
        progress: f64,
        ts: i64,
        cfg: &PipelineConfig,
    ) -> Vec<StopChange> {
        let mut out = Vec::new();
        let Some(c) = net.corridors().get(corridor) else {
            return out;
        };
        if self.corridor != Some(corridor) {
            out.extend(self.leave(net));
            *self = Stops {
                corridor: Some(corridor),
                ..Stops::default()
            };
        }
        self.sample(ts, progress, cfg.eta_window_ms);
        let stop_pos = |i: usize| c.stops.get(i).map(|cs| cs.at);
        let left = self
            .at_stop
            .filter(|&i| stop_pos(i).is_none_or(|p| dist(p, pos) > cfg.stop_radius_m));
        if let Some(i) = left {
            self.at_stop = None;
            if let Some(cs) = c.stops.get(i) {
                out.push(StopChange::Departure(cs.stop));
            }
        }
        if self.at_stop.is_none() {
            // The stop within the radius closest along the route (a loop's first and last stop
            // share a place; progress tells them apart).
            let window = cfg.stop_radius_m + STOP_PROGRESS_SLACK_M;
            let hit = c
                .stops
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != self.last_arrived)
                .filter(|(_, cs)| (cs.progress_m - progress).abs() <= window)
                .filter(|(i, _)| stop_pos(*i).is_some_and(|p| dist(p, pos) <= cfg.stop_radius_m))
                .min_by(|a, b| {
                    (a.1.progress_m - progress)
                        .abs()
                        .total_cmp(&(b.1.progress_m - progress).abs())
                });
            if let Some((i, cs)) = hit {
                self.at_stop = Some(i);
                self.last_arrived = Some(i);
                out.push(StopChange::Arrival(cs.stop));
            }
        }
        out
    }

    /// Records the progress of a fix at `ts` for the average speed over `window_ms`.
    ///
    /// The samples but the newest are kept at least `window_ms / SAMPLES_PER_WINDOW` apart: the
    /// newest is replaced by the next fix until it is that far from the one before it. At one fix a second that
    /// is 18 samples for the default 120 s window instead of 120, and the tracker snapshot that
    /// the state writer clones, serializes and sends to Redis on every update shrinks with it.
    /// The average then runs from the oldest sample in the window, up to one spacing (7.5 s of
    /// 120 s) later than the oldest fix in it.
    fn sample(&mut self, ts: i64, progress: f64, window_ms: i64) {
        let spacing = window_ms / SAMPLES_PER_WINDOW;
        let n = self.samples.len();
        if n >= 2 && self.samples[n - 1].0 - self.samples[n - 2].0 < spacing {
            self.samples[n - 1] = (ts, progress);
        } else {
            self.samples.push_back((ts, progress));
        }
        while self.samples.len() > MAX_SAMPLES
            || self.samples.front().is_some_and(|s| ts - s.0 > window_ms)
        {
            self.samples.pop_front();
        }
    }

    /// The vehicle left its corridor (deviation, lost match): a departure if it was at a stop.
    pub fn leave(&mut self, net: &Network) -> Option<StopChange> {
        let i = self.at_stop.take()?;
        let c = net.corridors().get(self.corridor?)?;
        Some(StopChange::Departure(c.stops.get(i)?.stop))
    }

    /// A new pass over the corridor began (progress jumped back): every stop may be arrived at
    /// again and the speed history restarts.
    pub fn new_pass(&mut self) {
        self.last_arrived = None;
        self.at_stop = None;
        self.samples.clear();
    }

    /// Whether the vehicle is at a stop.
    pub fn at_stop(&self) -> bool {
        self.at_stop.is_some()
    }

    /// Average speed along the route over the window, m/s, if it spans enough time.
    pub fn average_speed(&self) -> Option<f64> {
        let (&(t0, p0), &(t1, p1)) = (self.samples.front()?, self.samples.back()?);
        (t1 - t0 >= MIN_SPAN_MS).then(|| (p1 - p0).max(0.0) * 1000.0 / (t1 - t0) as f64)
    }

    /// The next stop ahead of `progress` on `corridor`, with its ETA from `ts`.
    pub fn next_stop(
        &self,
        net: &Network,
        corridor: usize,
        progress: f64,
        ts: i64,
        speed_now: f64,
    ) -> Option<NextStop> {
        self.upcoming(net, corridor, progress, ts, speed_now, 1)
            .into_iter()
            .next()
    }

    /// The next `max` stops ahead of `progress` on `corridor`, in order, each with its ETA from
    /// `ts`: its remaining distance along the route over the recent average speed (no dwell
    /// counted; none while slower than 0.3 m/s).
    pub fn upcoming(
        &self,
        net: &Network,
        corridor: usize,
        progress: f64,
        ts: i64,
        speed_now: f64,
        max: usize,
    ) -> Vec<NextStop> {
        let Some(c) = net.corridors().get(corridor) else {
            return Vec::new();
        };
        let speed = self.average_speed().unwrap_or(speed_now);
        c.stops
            .iter()
            .enumerate()
            .filter(|(i, cs)| {
                Some(*i) != self.at_stop
                    && self.last_arrived.is_none_or(|a| *i > a)
                    && cs.progress_m >= progress
            })
            .filter_map(|(_, cs)| {
                let stop = net.stops().get(cs.stop)?;
                let distance_m = (cs.progress_m - progress).max(0.0);
                let eta = (speed >= MIN_ETA_SPEED)
                    .then(|| ts.saturating_add((distance_m / speed * 1000.0) as i64));
                Some(NextStop {
                    id: stop.id.clone(),
                    name: stop.name.clone(),
                    // Published to a decimetre.
                    distance_m: (distance_m * 10.0).round() / 10.0,
                    eta,
                    scheduled: None,
                    delay_s: None,
                })
            })
            .take(max)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 120_000;

    /// `n` fixes one second apart at `speed` m/s from 0.
    fn driven(n: i64, speed: f64) -> Stops {
        let mut s = Stops::default();
        for k in 0..n {
            s.sample(k * 1000, speed * k as f64, WINDOW);
        }
        s
    }

    #[test]
    fn samples_stay_few_and_the_newest_is_the_last_fix() {
        let s = driven(1000, 8.0);
        assert!(s.samples.len() <= 18, "{} samples", s.samples.len());
        assert_eq!(s.samples.back(), Some(&(999_000, 8.0 * 999.0)));
        let (t0, _) = *s.samples.front().expect("a sample");
        assert!(
            (999_000 - WINDOW..=999_000 - WINDOW + WINDOW / 16).contains(&t0),
            "{t0}"
        );
        for w in s
            .samples
            .iter()
            .collect::<Vec<_>>()
            .windows(2)
            .rev()
            .skip(1)
        {
            assert!(w[1].0 - w[0].0 >= WINDOW / 16, "{:?}", w);
        }
    }

    #[test]
    fn the_average_speed_is_the_progress_over_the_window() {
        let s = driven(1000, 8.0);
        let v = s.average_speed().expect("a speed");
        assert!((v - 8.0).abs() < 1e-9, "{v}");
        // Not before MIN_SPAN_MS of samples, then from the first fix.
        assert_eq!(driven(5, 8.0).average_speed(), None);
        let early = driven(7, 4.0).average_speed().expect("6 s of samples");
        assert!((early - 4.0).abs() < 1e-9, "{early}");
    }

    #[test]
    fn a_snapshot_with_every_sample_of_an_older_build_loads_and_thins_out() {
        // What an older build stored: one sample per fix of the last 120 s.
        let samples: Vec<(i64, f64)> = (0..=120).map(|k| (k * 1000, 8.0 * k as f64)).collect();
        let json = serde_json::json!({"corridor": 4, "at_stop": null, "last_arrived": null,
                                      "samples": samples});
        let mut s: Stops = serde_json::from_value(json).expect("an older snapshot");
        assert_eq!(s.average_speed(), Some(8.0));
        for k in 121..=240 {
            s.sample(k * 1000, 8.0 * k as f64, WINDOW);
        }
        assert!(s.samples.len() <= 18, "{} samples", s.samples.len());
        assert_eq!(s.average_speed(), Some(8.0));
    }

    #[test]
    fn a_slowdown_shows_in_the_average() {
        let mut s = driven(200, 10.0);
        let at = 199_000;
        let mut progress = 1990.0;
        for k in 1..=60 {
            progress += 2.0;
            s.sample(at + k * 1000, progress, WINDOW);
        }
        // The last 120 s: 60 s at 10 m/s and 60 s at 2 m/s, give or take one spacing.
        let v = s.average_speed().expect("a speed");
        assert!((5.5..=6.5).contains(&v), "{v}");
    }
}
