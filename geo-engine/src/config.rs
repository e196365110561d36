//! Pipeline settings (docs/pipeline.md) with their defaults. The broker fills this from its own
//! configuration; the library only reads it.

use serde::{Deserialize, Serialize};

/// Thresholds and tuning of every pipeline stage. `Default` gives the docs/pipeline.md values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Largest believable speed, m/s: both the reported `speed` and the speed implied by the
    /// distance from the last accepted fix (teleport check).
    pub max_speed: f64,
    /// A fix whose `ts` is older than this (relative to the broker clock) is stale, ms.
    pub max_age_ms: i64,
    /// A fix whose `ts` is further than this in the future is rejected, ms.
    pub max_future_ms: i64,
    /// Largest accepted `accuracy`, metres.
    pub max_accuracy: f64,
    /// The jitter filter drops a fix that moved less than this from the last forwarded one...
    pub min_move_m: f64,
    /// ...while slower than this, m/s. Also the threshold between `moving` and `stopped`.
    pub min_speed: f64,
    /// Consecutive fixes outside (inside) the corridor before `deviation` (`back_on_route`).
    pub off_route_fixes: u32,
    /// Corridor half-width for routes without their own `corridor_m`, metres.
    pub corridor_m: f64,
    /// Back on route needs the vehicle this much inside the corridor edge, metres, so that a
    /// vehicle driving along the edge never flaps between deviation and back on route.
    pub corridor_hysteresis_m: f64,
    /// Distance from a stop that counts as arrived, metres.
    pub stop_radius_m: f64,
    /// A vehicle without a fix for this long is offline, ms.
    pub stale_after_ms: i64,
    /// Kalman process noise: spectral density of the white acceleration, m²/s³. Larger follows
    /// manoeuvres faster, smaller smooths more. 1.0 gave the lowest error on simulated bus
    /// traces at 1 Hz with 3–15 m noise (0.5 and 2.0 within 5 %, 0.1 about 30 % worse).
    pub process_noise: f64,
    /// Measurement standard deviation used when a fix has no `accuracy`, metres.
    pub default_accuracy_m: f64,
    /// Window of the recent average speed used for ETAs, ms.
    pub eta_window_ms: i64,
    /// A backward jump along the route larger than this starts a new trip (progress resets);
    /// smaller backward moves are GPS noise and progress holds, metres.
    pub progress_reset_m: f64,
    /// A gap between fixes longer than this restarts the Kalman filter, ms.
    pub filter_reset_ms: i64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_speed: 70.0,
            max_age_ms: 24 * 3600 * 1000,
            max_future_ms: 30_000,
            max_accuracy: 100.0,
            min_move_m: 10.0,
            min_speed: 0.5,
            off_route_fixes: 3,
            corridor_m: 50.0,
            corridor_hysteresis_m: 10.0,
            stop_radius_m: 30.0,
            stale_after_ms: 60_000,
            process_noise: 1.0,
            default_accuracy_m: 10.0,
            eta_window_ms: 120_000,
            progress_reset_m: 200.0,
            filter_reset_ms: 60_000,
        }
    }
}
