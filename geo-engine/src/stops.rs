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
        self.samples.push_back((ts, progress));
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| ts - s.0 > cfg.eta_window_ms)
        {
            self.samples.pop_front();
        }
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
