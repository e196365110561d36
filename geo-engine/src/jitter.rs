//! Stage 3, jitter filter (docs/pipeline.md#jitter-filter): a stationary GPS wanders by a few
//! metres; a fix that moved less than `min_move_m` from the last forwarded fix while slower than
//! `min_speed` is not forwarded (it only refreshes last-seen). The speed is the reported one, or
//! the one implied by the distance and time from the last forwarded fix.

use serde::{Deserialize, Serialize};

use crate::config::PipelineConfig;
use crate::fix::Fix;
use geo::Point;

use crate::local::haversine_m;

/// The last forwarded raw position of one vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jitter {
    /// `(lat, lon, ts)` of the last forwarded fix (this order is the snapshot's serialised form).
    last: Option<(f64, f64, i64)>,
}

impl Jitter {
    /// Whether `fix` is jitter around the last forwarded position.
    pub fn is_jitter(&self, fix: &Fix, cfg: &PipelineConfig) -> bool {
        let Some((lat, lon, ts)) = self.last else {
            return false;
        };
        let moved = haversine_m(Point::new(lon, lat), fix.position());
        if moved >= cfg.min_move_m {
            return false;
        }
        let speed = match fix.speed {
            Some(s) => s,
            None => {
                let dt_s = (fix.ts - ts) as f64 / 1000.0;
                if dt_s > 0.0 { moved / dt_s } else { 0.0 }
            }
        };
        speed < cfg.min_speed
    }

    /// Records `fix` as forwarded.
    pub fn forwarded(&mut self, fix: &Fix) {
        self.last = Some((fix.lat, fix.lon, fix.ts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::{Local, LocalFrame};
    use proptest::prelude::*;

    proptest! {
        /// Whatever the sequence, a fix forwarded after the first is either ≥ min_move_m from
        /// the previous forwarded one or at least min_speed fast.
        #[test]
        fn never_forwards_small_slow_moves(
            steps in prop::collection::vec((-15.0f64..15.0, -15.0f64..15.0, 1i64..30_000, prop::option::of(0.0f64..1.0)), 1..80)
        ) {
            let cfg = PipelineConfig::default();
            let frame = LocalFrame::new(Point::new(145.77, -16.92));
            let mut j = Jitter::default();
            let mut p = Local::default();
            let mut ts = 1_000_000i64;
            let mut last_fwd: Option<(Local, i64)> = None;
            for (dx, dy, dt, speed) in steps {
                p = Local::new(p.x() + dx, p.y() + dy);
                ts += dt;
                let at = frame.to_geo(p);
                let fix = Fix { speed, ..Fix::new(at, ts) };
                if !j.is_jitter(&fix, &cfg) {
                    if let Some((q, qts)) = last_fwd {
                        let moved = haversine_m(frame.to_geo(q), at);
                        let v = speed.unwrap_or(moved / ((ts - qts) as f64 / 1000.0));
                        prop_assert!(moved >= cfg.min_move_m || v >= cfg.min_speed,
                            "forwarded a {moved:.2} m move at {v:.2} m/s");
                    }
                    j.forwarded(&fix);
                    last_fwd = Some((p, ts));
                }
            }
        }
    }

    #[test]
    fn slow_small_move_is_jitter_fast_or_far_is_not() {
        let cfg = PipelineConfig::default();
        let mut j = Jitter::default();
        let a = Fix::new(Point::new(145.77, -16.92), 0);
        assert!(!j.is_jitter(&a, &cfg));
        j.forwarded(&a);
        let near = Fix {
            speed: Some(0.1),
            ..Fix::new(Point::new(145.77, -16.92003), 1000)
        }; // ~3 m
        assert!(j.is_jitter(&near, &cfg));
        assert!(!j.is_jitter(
            &Fix {
                speed: Some(5.0),
                ..near.clone()
            },
            &cfg
        ));
        let far = Fix {
            speed: Some(0.1),
            ..Fix::new(Point::new(145.77, -16.9202), 1000)
        }; // ~22 m
        assert!(!j.is_jitter(&far, &cfg));
        // No reported speed: 3 m in 1 s is 3 m/s (moving), in 60 s it is 0.05 m/s (jitter).
        assert!(!j.is_jitter(&Fix::new(Point::new(145.77, -16.92003), 1000), &cfg));
        assert!(j.is_jitter(&Fix::new(Point::new(145.77, -16.92003), 60_000), &cfg));
    }
}
