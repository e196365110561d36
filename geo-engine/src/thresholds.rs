//! Per-route pipeline thresholds: a GeoJSON route feature may carry, beside `corridor_m`, any of
//! `off_route_fixes`, `stop_radius_m`, `min_move_m`, `min_speed`, `max_speed` and
//! `max_accuracy` and `stale_after` (seconds) in its properties; they replace the operator's settings for vehicles on that
//! route (the route a fix names, else the one the vehicle last named).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::config::PipelineConfig;
use crate::network::Network;

/// Thresholds a route sets for itself; `None` keeps the operator's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteThresholds {
    pub off_route_fixes: Option<u32>,
    pub stop_radius_m: Option<f64>,
    pub min_move_m: Option<f64>,
    pub min_speed: Option<f64>,
    pub max_speed: Option<f64>,
    pub max_accuracy: Option<f64>,
    /// Seconds without a fix before a vehicle on this route goes offline.
    pub stale_after_s: Option<f64>,
}

impl RouteThresholds {
    /// Reads the thresholds from a route feature's properties.
    ///
    /// # Errors
    /// The first property that is not a non-negative number (a positive whole number for
    /// `off_route_fixes`), as a message.
    pub(crate) fn from_properties(props: &Map<String, Value>) -> Result<Option<Self>, String> {
        let num = |k: &str| -> Result<Option<f64>, String> {
            match props.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .map(Some)
                    .ok_or_else(|| format!("{k} must be a non-negative number")),
            }
        };
        let fixes = match props.get("off_route_fixes") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("off_route_fixes must be a whole number from 1 to 1000")?
                    as u32,
            ),
        };
        let t = RouteThresholds {
            off_route_fixes: fixes,
            stop_radius_m: num("stop_radius_m")?,
            min_move_m: num("min_move_m")?,
            min_speed: num("min_speed")?,
            max_speed: num("max_speed")?.filter(|v| *v > 0.0),
            max_accuracy: num("max_accuracy")?,
            stale_after_s: num("stale_after")?.filter(|v| *v > 0.0),
        };
        Ok((t != RouteThresholds::default()).then_some(t))
    }

    fn apply(&self, base: &PipelineConfig) -> PipelineConfig {
        PipelineConfig {
            off_route_fixes: self.off_route_fixes.unwrap_or(base.off_route_fixes),
            stop_radius_m: self.stop_radius_m.unwrap_or(base.stop_radius_m),
            min_move_m: self.min_move_m.unwrap_or(base.min_move_m),
            min_speed: self.min_speed.unwrap_or(base.min_speed),
            max_speed: self.max_speed.unwrap_or(base.max_speed),
            max_accuracy: self.max_accuracy.unwrap_or(base.max_accuracy),
            #[allow(clippy::cast_possible_truncation)] // at most ~292 million years in ms
            stale_after_ms: self
                .stale_after_s
                .map_or(base.stale_after_ms, |s| (s * 1000.0).min(i64::MAX as f64) as i64),
            ..base.clone()
        }
    }
}

impl Network {
    /// The thresholds for a vehicle on `route`: `cfg` itself unless the route sets its own.
    pub fn route_config<'a>(
        &self,
        route: Option<&str>,
        cfg: &'a PipelineConfig,
    ) -> Cow<'a, PipelineConfig> {
        // No lookup at all on a network without per-route thresholds (every GTFS network).
        if self.thresholds.is_empty() {
            return Cow::Borrowed(cfg);
        }
        match route.and_then(|r| self.thresholds.get(r)) {
            Some(t) => Cow::Owned(t.apply(cfg)),
            None => Cow::Borrowed(cfg),
        }
    }

    /// The thresholds route `id` sets, if any.
    pub fn route_thresholds(&self, id: &str) -> Option<&RouteThresholds> {
        self.thresholds.get(id)
    }
}
