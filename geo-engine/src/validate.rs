//! Stage 1, validation (docs/pipeline.md#validate): plausibility checks on one fix against the
//! clock and the vehicle's last accepted fix. Every rejection has a named reason (the `reason`
//! label of `fleetmq_updates_rejected_total`) and the field it concerns (the PUBACK reason string).

use serde::{Deserialize, Serialize};

use crate::config::PipelineConfig;
use crate::fix::Fix;
use geo::Point;

use crate::local::haversine_m;

/// Why an update was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The payload is not JSON, or not an object or array of objects.
    BadJson,
    /// A required field (`lat`, `lon`, `ts`) is absent.
    MissingField,
    /// A field has the wrong type.
    InvalidField,
    /// Latitude outside [-90, 90].
    LatOutOfRange,
    /// Longitude outside [-180, 180].
    LonOutOfRange,
    /// Exactly (0, 0): an unset GPS.
    NullIsland,
    /// `ts` older than `max_age`.
    StaleTs,
    /// `ts` more than `max_future` ahead of the broker clock.
    FutureTs,
    /// Reported speed negative or above `max_speed`.
    Speed,
    /// Speed implied by the last accepted fix above `max_speed`.
    Teleport,
    /// Accuracy negative or above `max_accuracy`.
    Accuracy,
}

impl RejectReason {
    /// Stable snake_case name, as used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadJson => "bad_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::LatOutOfRange => "lat_out_of_range",
            RejectReason::LonOutOfRange => "lon_out_of_range",
            RejectReason::NullIsland => "null_island",
            RejectReason::StaleTs => "stale_ts",
            RejectReason::FutureTs => "future_ts",
            RejectReason::Speed => "speed",
            RejectReason::Teleport => "teleport",
            RejectReason::Accuracy => "accuracy",
        }
    }

    /// Every reason, for pre-registering metric label values.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::BadJson,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::LatOutOfRange,
        RejectReason::LonOutOfRange,
        RejectReason::NullIsland,
        RejectReason::StaleTs,
        RejectReason::FutureTs,
        RejectReason::Speed,
        RejectReason::Teleport,
        RejectReason::Accuracy,
    ];
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected update: why, which field, and a human-readable message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason} ({field}): {message}")]
pub struct Rejection {
    /// The reason, for metrics.
    pub reason: RejectReason,
    /// The JSON field concerned (`payload` when the whole message is bad).
    pub field: &'static str,
    /// Details for the PUBACK reason string and logs.
    pub message: String,
}

impl Rejection {
    /// A rejection with a message.
    pub fn new(reason: RejectReason, field: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            field,
            message: message.into(),
        }
    }

    /// `missing_field`: "`field` is required".
    pub fn missing(field: &'static str) -> Rejection {
        Rejection::new(
            RejectReason::MissingField,
            field,
            format!("{field} is required"),
        )
    }

    /// `invalid_field`: "`field`: `what`".
    pub fn invalid(field: &'static str, what: &str) -> Rejection {
        Rejection::new(
            RejectReason::InvalidField,
            field,
            format!("{field}: {what}"),
        )
    }
}

/// What validation remembers of the last accepted fix (for the teleport check).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastFix {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Device time, Unix ms.
    pub ts: i64,
    /// Reported accuracy, metres (0 when absent).
    pub accuracy: f64,
}

impl LastFix {
    /// Remembers `fix`.
    pub fn of(fix: &Fix) -> LastFix {
        LastFix {
            lat: fix.lat,
            lon: fix.lon,
            ts: fix.ts,
            accuracy: fix.accuracy.unwrap_or(0.0),
        }
    }
}

/// Checks one fix (docs/pipeline.md#validate).
///
/// The teleport check subtracts both fixes' reported accuracies from the distance, so ordinary
/// GPS noise between close fixes never reads as an impossible speed; it is skipped when `ts` is
/// not newer than the last fix (that is dedup's call).
///
/// # Errors
/// The first failed check, as a [`Rejection`].
pub fn validate(
    fix: &Fix,
    last: Option<&LastFix>,
    cfg: &PipelineConfig,
    now_ms: i64,
) -> Result<(), Rejection> {
    use RejectReason::*;
    if !(-90.0..=90.0).contains(&fix.lat) || !fix.lat.is_finite() {
        return Err(Rejection::new(
            LatOutOfRange,
            "lat",
            format!("lat {} outside [-90, 90]", fix.lat),
        ));
    }
    if !(-180.0..=180.0).contains(&fix.lon) || !fix.lon.is_finite() {
        return Err(Rejection::new(
            LonOutOfRange,
            "lon",
            format!("lon {} outside [-180, 180]", fix.lon),
        ));
    }
    if fix.lat == 0.0 && fix.lon == 0.0 {
        return Err(Rejection::new(
            NullIsland,
            "lat",
            "position (0, 0) is an unset GPS",
        ));
    }
    if fix.ts > now_ms.saturating_add(cfg.max_future_ms) {
        return Err(Rejection::new(
            FutureTs,
            "ts",
            format!(
                "ts {} is {} ms in the future",
                fix.ts,
                fix.ts.saturating_sub(now_ms)
            ),
        ));
    }
    if fix.ts < now_ms.saturating_sub(cfg.max_age_ms) {
        return Err(Rejection::new(
            StaleTs,
            "ts",
            format!("ts {} is older than {} ms", fix.ts, cfg.max_age_ms),
        ));
    }
    if let Some(speed) = fix.speed.filter(|s| !(0.0..=cfg.max_speed).contains(s)) {
        return Err(Rejection::new(
            Speed,
            "speed",
            format!("speed {speed} m/s outside [0, {}]", cfg.max_speed),
        ));
    }
    if let Some(acc) = fix
        .accuracy
        .filter(|a| !(0.0..=cfg.max_accuracy).contains(a))
    {
        return Err(Rejection::new(
            Accuracy,
            "accuracy",
            format!("accuracy {acc} m outside [0, {}]", cfg.max_accuracy),
        ));
    }
    if let Some(last) = last.filter(|l| fix.ts > l.ts) {
        let d = haversine_m(Point::new(last.lon, last.lat), fix.position());
        let slack = last.accuracy + fix.accuracy.unwrap_or(0.0);
        let dt_s = (fix.ts - last.ts) as f64 / 1000.0;
        let implied = (d - slack).max(0.0) / dt_s;
        if implied > cfg.max_speed {
            return Err(Rejection::new(
                Teleport,
                "lat",
                format!(
                    "implied speed {implied:.0} m/s from the last fix exceeds {}",
                    cfg.max_speed
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_700_000_000;

    fn check(f: &Fix, last: Option<&LastFix>) -> Option<(RejectReason, &'static str)> {
        validate(f, last, &PipelineConfig::default(), NOW)
            .err()
            .map(|r| (r.reason, r.field))
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let ok = Fix::new(Point::new(145.77, -16.92), NOW);
        assert_eq!(check(&ok, None), None);
        let with = |g: &dyn Fn(&mut Fix)| {
            let mut f = ok.clone();
            g(&mut f);
            check(&f, None)
        };
        assert_eq!(
            with(&|f| f.lat = 91.0),
            Some((RejectReason::LatOutOfRange, "lat"))
        );
        assert_eq!(
            with(&|f| f.lon = -180.5),
            Some((RejectReason::LonOutOfRange, "lon"))
        );
        assert_eq!(
            with(&|f| {
                f.lat = 0.0;
                f.lon = 0.0
            }),
            Some((RejectReason::NullIsland, "lat"))
        );
        assert_eq!(
            with(&|f| f.ts = NOW + 31_000),
            Some((RejectReason::FutureTs, "ts"))
        );
        assert_eq!(with(&|f| f.ts = NOW + 29_000), None);
        assert_eq!(
            with(&|f| f.ts = NOW - 25 * 3600 * 1000),
            Some((RejectReason::StaleTs, "ts"))
        );
        assert_eq!(
            with(&|f| f.speed = Some(70.5)),
            Some((RejectReason::Speed, "speed"))
        );
        assert_eq!(
            with(&|f| f.speed = Some(-1.0)),
            Some((RejectReason::Speed, "speed"))
        );
        assert_eq!(
            with(&|f| f.accuracy = Some(101.0)),
            Some((RejectReason::Accuracy, "accuracy"))
        );
        assert_eq!(RejectReason::StaleTs.as_str(), "stale_ts");
    }

    #[test]
    fn teleport_uses_last_fix_and_accuracy_slack() {
        let last = LastFix {
            lat: -16.92,
            lon: 145.77,
            ts: NOW - 1000,
            accuracy: 0.0,
        };
        // ~111 m north in 1 s: 111 m/s.
        let far = Fix::new(Point::new(145.77, -16.919), NOW);
        assert_eq!(
            check(&far, Some(&last)),
            Some((RejectReason::Teleport, "lat"))
        );
        // The same jump over 2 s is 55 m/s: fine.
        let slow = LastFix {
            ts: NOW - 2000,
            ..last
        };
        assert_eq!(check(&far, Some(&slow)), None);
        // Two fixes each ±30 m accurate may be 60 m apart at rest.
        let mut noisy = far.clone();
        noisy.accuracy = Some(50.0);
        let noisy_last = LastFix {
            accuracy: 50.0,
            ..last
        };
        assert_eq!(check(&noisy, Some(&noisy_last)), None);
    }
}
