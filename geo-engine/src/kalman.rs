//! Stage 4, smoothing (docs/pipeline.md#smooth): a constant-velocity Kalman filter in local metres.
//!
//! # State
//! Per axis (east `x`, north `y`) the state is `[position m, velocity m/s]` with a 2×2
//! covariance. With an isotropic measurement noise and a process noise that does not couple
//! the axes, the 4-state filter `[x, y, vx, vy]` separates exactly into two independent
//! 2-state filters, which is what [`Kalman`] runs (cheaper, same result).
//!
//! # Model
//! - Transition over `dt` seconds: `F = [[1, dt], [0, 1]]`.
//! - Process noise, continuous white-noise acceleration of spectral density `q` (m²/s³):
//!   `Q = q · [[dt³/3, dt²/2], [dt²/2, dt]]`.
//! - Measurement: position only, `H = [1, 0]`, `R = σ²` with `σ` the fix's `accuracy` (m).
//!
//! # Units
//! Metres, seconds, metres per second.
//!
//! # References
//! Bar-Shalom, Li, Kirubarajan, *Estimation with Applications to Tracking and Navigation*
//! (2001), §6.2.2 (the continuous white noise acceleration model).

use serde::{Deserialize, Serialize};

use crate::local::Local;

/// One axis: position, velocity and their covariance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Axis {
    pos: f64,
    vel: f64,
    /// Covariance `[[pp, pv], [pv, vv]]`.
    p: [f64; 3],
}

/// Initial velocity variance: a bus's speed is unknown but below ~30 m/s, (m/s)².
const INITIAL_VEL_VAR: f64 = 100.0;

/// The least measurement variance, m² (σ = 10 cm): keeps the gain below 1 for a zero accuracy.
const MIN_MEASUREMENT_VAR: f64 = 0.01;

impl Axis {
    fn new(pos: f64, sigma: f64) -> Axis {
        Axis {
            pos,
            vel: 0.0,
            p: [sigma * sigma, 0.0, INITIAL_VEL_VAR],
        }
    }

    fn predict(&mut self, dt: f64, q: f64) {
        let [pp, pv, vv] = self.p;
        self.pos += self.vel * dt;
        // F P Fᵀ + Q
        let pp2 = pp + 2.0 * dt * pv + dt * dt * vv + q * dt * dt * dt / 3.0;
        let pv2 = pv + dt * vv + q * dt * dt / 2.0;
        let vv2 = vv + q * dt;
        self.p = [pp2, pv2, vv2];
    }

    fn update(&mut self, z: f64, r: f64) {
        let [pp, pv, vv] = self.p;
        let s = pp + r;
        if s <= 0.0 || !s.is_finite() {
            return;
        }
        let (k0, k1) = (pp / s, pv / s);
        let y = z - self.pos;
        self.pos += k0 * y;
        self.vel += k1 * y;
        // (I - K H) P
        self.p = [(1.0 - k0) * pp, (1.0 - k0) * pv, vv - k1 * pv];
    }
}

/// A constant-velocity Kalman filter over local east/north metres.
///
/// # Examples
/// ```
/// use geo_engine::kalman::Kalman;
/// use geo_engine::local::Local;
/// let mut k = Kalman::new(Local::new(0.0, 0.0), 5.0, 0);
/// for i in 1..=20 {
///     // moving east at 10 m/s, one fix a second
///     k.step(Local::new(10.0 * i as f64, 0.0), 5.0, i * 1000, 1.0);
/// }
/// let [vx, vy] = k.velocity();
/// assert!((vx - 10.0).abs() < 1.0 && vy.abs() < 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kalman {
    x: Axis,
    y: Axis,
    /// Time of the last update, Unix ms.
    ts: i64,
}

impl Kalman {
    /// A filter initialised at a first measurement `z` (m) with standard deviation `sigma` (m).
    pub fn new(z: Local, sigma: f64, ts: i64) -> Kalman {
        Kalman {
            x: Axis::new(z.x(), sigma),
            y: Axis::new(z.y(), sigma),
            ts,
        }
    }

    /// Predicts to `ts` and corrects with the measurement `z` of standard deviation `sigma`;
    /// returns the new position estimate. `q` is the process noise (m²/s³). A `ts` not after
    /// the last one only corrects.
    pub fn step(&mut self, z: Local, sigma: f64, ts: i64, q: f64) -> Local {
        let dt = (ts - self.ts) as f64 / 1000.0;
        if dt > 0.0 {
            self.x.predict(dt, q);
            self.y.predict(dt, q);
            self.ts = ts;
        }
        let r = (sigma * sigma).max(MIN_MEASUREMENT_VAR);
        self.x.update(z.x(), r);
        self.y.update(z.y(), r);
        self.position()
    }

    /// Estimated position, metres.
    pub fn position(&self) -> Local {
        Local::new(self.x.pos, self.y.pos)
    }

    /// Estimated velocity, m/s east and north.
    pub fn velocity(&self) -> [f64; 2] {
        [self.x.vel, self.y.vel]
    }

    /// Time of the last update, Unix ms.
    pub fn ts(&self) -> i64 {
        self.ts
    }

    /// Whether the estimate is finite (a filter fed absurd values is reset by its owner).
    pub fn is_finite(&self) -> bool {
        self.x.pos.is_finite()
            && self.y.pos.is_finite()
            && self.x.vel.is_finite()
            && self.y.vel.is_finite()
    }
}
