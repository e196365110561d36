//! A tracker's snapshot: what the broker stores to restore a vehicle elsewhere or after a
//! restart (`HSET tracker`, once per processed fix).
//!
//! # Binary layout (what the broker writes)
//! [`SNAPSHOT_MAGIC`] (a NUL, so never the start of JSON; `FT`; the layout's version), then
//! the tracker's fields in [`Fields`]' order as postcard (varints, `f64` as 8 bytes) with
//! `state` written as absent, then the state's JSON as the broker made it for the state's
//! payload, to the end (nothing when there is no state). postcard keeps no field names, so a
//! change to any field of the tracker (added, removed, another type) is a new layout: bump the
//! version byte; `tests::layout_is_pinned` fails until then. A snapshot of an unknown version
//! does not read (the broker starts that vehicle afresh, as for a damaged one). The layout as
//! stored: docs/redis.md#the-tracker-snapshot.
//!
//! Why binary: the JSON of a tracker (~1.6 KB, ~40 keys, ~25 floats) cost a quarter of the
//! broker's instructions per update, most of it escaping keys and printing floats. The state
//! inside stays JSON because the broker has just made those bytes for the state's payload.
//!
//! # JSON
//! [`Serialize`] still makes the JSON a derive would (tests, tools), and
//! [`Tracker::read_snapshot`] reads JSON snapshots too (what fleetmq stored before the binary
//! layout), so an upgrade keeps every vehicle's filters.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::{RouteMatch, Tracker};
use crate::dedup::Dedup;
use crate::deviation::Deviation;
use crate::geofence::Geofences;
use crate::jitter::Jitter;
use crate::kalman::Kalman;
use crate::local::LocalFrame;
use crate::schedule::TripTracking;
use crate::state::VehicleState;
use crate::stops::Stops;
use crate::validate::LastFix;

/// The first bytes of a binary snapshot (module doc); the last one is the layout's version.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"\0FT2";

/// Why a stored snapshot does not read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Neither JSON nor this version's binary layout (another version, or damaged).
    #[error("not a tracker snapshot of this version")]
    Version,
    /// The binary fields do not read.
    #[error("binary snapshot: {0}")]
    Binary(#[from] postcard::Error),
    /// The JSON (a JSON snapshot, or the state's JSON of a binary one) does not read.
    #[error("snapshot JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The tracker's fields, in their order.
#[derive(Serialize)]
struct Fields<'a> {
    vehicle: &'a str,
    route: &'a Option<Arc<str>>,
    trip: &'a Option<Arc<str>>,
    last: &'a Option<LastFix>,
    dedup: &'a Dedup,
    jitter: &'a Jitter,
    frame: &'a Option<LocalFrame>,
    kalman: &'a Option<Kalman>,
    matched: &'a Option<RouteMatch>,
    deviation: &'a Deviation,
    stops: &'a Stops,
    geofences: &'a Geofences,
    state: &'a Option<VehicleState>,
    last_seen_ms: &'a Option<i64>,
    offline: &'a bool,
    schedule: &'a TripTracking,
}

impl Tracker {
    fn fields<'a>(&'a self, state: &'a Option<VehicleState>) -> Fields<'a> {
        // Destructured whole, not read field by field: a field added to `Tracker` and not here
        // fails to compile instead of going missing from snapshots.
        let Tracker {
            vehicle,
            route,
            trip,
            last,
            dedup,
            jitter,
            frame,
            kalman,
            matched,
            deviation,
            stops,
            geofences,
            state: _,
            last_seen_ms,
            offline,
            schedule,
        } = self;
        Fields {
            vehicle,
            route,
            trip,
            last,
            dedup,
            jitter,
            frame,
            kalman,
            matched,
            deviation,
            stops,
            geofences,
            state,
            last_seen_ms,
            offline,
            schedule,
        }
    }

    /// Appends the tracker's binary snapshot (module doc) to `out`, with `state_json` as its
    /// state: the JSON of [`Tracker::state`], made for its payload (`processed_at` may be later
    /// by the time the payload was made). `state_json` is ignored when there is no state.
    ///
    /// # Errors
    /// Only if a value cannot be serialized (none of the tracker's can).
    pub fn write_snapshot(&self, out: &mut Vec<u8>, state_json: &[u8]) -> postcard::Result<()> {
        out.extend_from_slice(SNAPSHOT_MAGIC);
        // The state goes in as `None` and its JSON after the fields; `read_snapshot` puts it
        // back.
        let fields = self.fields(&None);
        *out = postcard::to_extend(&fields, std::mem::take(out))?;
        if self.state.is_some() {
            out.extend_from_slice(state_json);
        }
        Ok(())
    }

    /// A tracker from a stored snapshot: this version's binary layout, or JSON.
    ///
    /// # Errors
    /// [`SnapshotError`]: another layout version, or bytes that do not read as one.
    pub fn read_snapshot(bytes: &[u8]) -> Result<Tracker, SnapshotError> {
        if bytes.first() == Some(&b'{') {
            return Ok(serde_json::from_slice(bytes)?);
        }
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or(SnapshotError::Version)?;
        let (mut tracker, state_json) = postcard::take_from_bytes::<Tracker>(body)?;
        if !state_json.is_empty() {
            tracker.state = Some(serde_json::from_slice(state_json)?);
        }
        Ok(tracker)
    }
}

impl Serialize for Tracker {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields(&self.state).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Network;
    use crate::state::VehicleStatus;
    use crate::{PipelineConfig, SimConfig, simulate};

    /// A tracker after three minutes on a route of the bundled network: every part of it has
    /// something in it.
    fn busy_tracker() -> Tracker {
        let net = Network::bundled();
        let cfg = PipelineConfig::default();
        let sim = SimConfig {
            route: net.route_ids().next().unwrap().to_string(),
            noise_m: 4.0,
            ..SimConfig::default()
        };
        let mut t = Tracker::new("bus");
        for f in simulate(&net, &sim).iter().take(180) {
            let _ = t.process(&net, &cfg, f.fix.clone(), f.sent_ms + 20);
        }
        assert!(
            t.state()
                .is_some_and(|s| s.status != VehicleStatus::Offline)
        );
        t
    }

    fn snapshot(t: &Tracker) -> Vec<u8> {
        let state_json = t.state().map(|s| serde_json::to_vec(s).unwrap());
        let mut out = b"junk before ".to_vec();
        let at = out.len();
        t.write_snapshot(&mut out, state_json.as_deref().unwrap_or(b"{\"never\":1}"))
            .unwrap();
        out.split_off(at)
    }

    #[test]
    fn a_binary_snapshot_reads_back_as_the_same_tracker() {
        let t = busy_tracker();
        let bytes = snapshot(&t);
        assert!(bytes.starts_with(SNAPSHOT_MAGIC));
        assert_eq!(Tracker::read_snapshot(&bytes).unwrap(), t);
        // Smaller than the JSON, which spells every key and prints every float.
        let json = serde_json::to_vec(&t).unwrap();
        assert!(
            bytes.len() * 3 < json.len() * 2,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn a_tracker_without_a_state_reads_back_without_one() {
        let t = Tracker::new("bus-1");
        let bytes = snapshot(&t);
        let back = Tracker::read_snapshot(&bytes).unwrap();
        assert!(back.state().is_none());
        assert_eq!(back, t);
    }

    #[test]
    fn json_snapshots_of_earlier_versions_still_read() {
        let t = busy_tracker();
        let json = serde_json::to_vec(&t).unwrap();
        assert_eq!(Tracker::read_snapshot(&json).unwrap(), t);
        // One stored by a broker (session 14's bench), state embedded last.
        let stored = include_bytes!("testdata/tracker-json.json");
        let t = Tracker::read_snapshot(stored).unwrap();
        assert_eq!(t.vehicle(), "b14111-1874");
        assert_eq!(t.state().unwrap().route.as_deref(), Some("140"));
    }

    /// The binary layout of a known tracker, byte for byte: a change to the tracker's fields
    /// changes it. Then bump [`SNAPSHOT_MAGIC`]'s version and write the new bytes here
    /// (`FLEETMQ_WRITE_SNAPSHOT_FIXTURE=1 cargo test -p geo-engine layout_is_pinned`).
    #[test]
    fn layout_is_pinned() {
        let t = Tracker::read_snapshot(include_bytes!("testdata/tracker-json.json")).unwrap();
        let state_json = serde_json::to_vec(t.state().unwrap()).unwrap();
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes, &state_json).unwrap();
        // The magic and the fields; the state's JSON after them is the state's own format.
        let fields = &bytes[..bytes.len() - state_json.len()];
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/tracker/testdata/tracker-v2.bin"
        );
        if std::env::var_os("FLEETMQ_WRITE_SNAPSHOT_FIXTURE").is_some() {
            std::fs::write(fixture, fields).unwrap();
        }
        assert_eq!(
            fields,
            std::fs::read(fixture).unwrap(),
            "the tracker's binary layout changed: bump SNAPSHOT_MAGIC's version byte, then \
             rewrite the fixture (see this test's doc)"
        );
        assert_eq!(Tracker::read_snapshot(&bytes).unwrap(), t);
    }

    #[test]
    fn other_versions_and_damaged_snapshots_are_errors() {
        let bytes = snapshot(&busy_tracker());
        let mut v1 = bytes.clone();
        v1[3] = b'1';
        assert!(matches!(
            Tracker::read_snapshot(&v1),
            Err(SnapshotError::Version)
        ));
        assert!(Tracker::read_snapshot(b"").is_err());
        assert!(Tracker::read_snapshot(b"{\"vehicle\":").is_err());
        // Every cut is an error, but the one right after the fields, which reads as a tracker
        // without a state.
        for n in 0..bytes.len() {
            if let Ok(t) = Tracker::read_snapshot(&bytes[..n]) {
                assert!(t.state().is_none(), "cut at {n}");
            }
        }
        // Cut inside the fields: an error.
        for n in 0..SNAPSHOT_MAGIC.len() + 20 {
            assert!(Tracker::read_snapshot(&bytes[..n]).is_err(), "cut at {n}");
        }
        // Every byte flipped: no panic.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            let _ = Tracker::read_snapshot(&b);
        }
    }

    #[test]
    fn serialize_keeps_every_field_in_its_place() {
        let t = busy_tracker();
        let v = serde_json::to_value(&t).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), 16, "{keys:?}");
        let text = serde_json::to_string(&t).unwrap();
        let state_at = text.find("\"state\":").unwrap();
        assert!(text.find("\"geofences\":").unwrap() < state_at);
        assert!(state_at < text.find("\"last_seen_ms\":").unwrap());
    }
}
