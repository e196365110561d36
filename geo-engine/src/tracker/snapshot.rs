//! A tracker's JSON snapshot (what the broker stores to restore a vehicle elsewhere or after a
//! restart). One field list, [`Fields`], serves both [`Serialize`] for [`Tracker`] (the bytes a
//! derive would make) and [`Tracker::write_json_with_state`], which takes the state's JSON
//! ready-made: the broker has just made it for the state's payload, and serializing the
//! embedded state again was about a third of the snapshot's cost.

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

/// The tracker's fields, in their order; `state` is left out when `None` (the caller writes it).
#[derive(Serialize)]
struct Fields<'a> {
    vehicle: &'a str,
    route: &'a Option<String>,
    trip: &'a Option<String>,
    last: &'a Option<LastFix>,
    dedup: &'a Dedup,
    jitter: &'a Jitter,
    frame: &'a Option<LocalFrame>,
    kalman: &'a Option<Kalman>,
    matched: &'a Option<RouteMatch>,
    deviation: &'a Deviation,
    stops: &'a Stops,
    geofences: &'a Geofences,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a Option<VehicleState>>,
    last_seen_ms: &'a Option<i64>,
    offline: &'a bool,
    schedule: &'a TripTracking,
}

impl Tracker {
    fn fields<'a>(&'a self, state: Option<&'a Option<VehicleState>>) -> Fields<'a> {
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

    /// Appends the tracker's JSON to `out` with `state_json` as its `state`: the JSON of this
    /// tracker's [`Tracker::state`] (made for its payload; `processed_at` may be later by the
    /// time the payload was made). The document reads back as the same tracker; `state` comes
    /// last instead of in its place. With no state the JSON is what `serde_json` would make.
    ///
    /// # Errors
    /// Only if a value cannot be serialized (none of the tracker's can).
    pub fn write_json_with_state(
        &self,
        out: &mut Vec<u8>,
        state_json: &[u8],
    ) -> serde_json::Result<()> {
        if self.state.is_none() {
            return serde_json::to_writer(out, self);
        }
        let start = out.len();
        serde_json::to_writer(&mut *out, &self.fields(None))?;
        // `Fields` is a struct: its JSON is an object, ending in `}` with at least `vehicle`.
        debug_assert_eq!(out.last(), Some(&b'}'));
        debug_assert!(out.len() > start + 2);
        out.pop();
        out.extend_from_slice(b",\"state\":");
        out.extend_from_slice(state_json);
        out.push(b'}');
        Ok(())
    }
}

impl Serialize for Tracker {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields(Some(&self.state)).serialize(serializer)
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

    #[test]
    fn the_state_written_by_the_caller_reads_back_as_the_same_tracker() {
        let t = busy_tracker();
        let whole = serde_json::to_vec(&t).unwrap();
        let state_json = serde_json::to_vec(t.state().unwrap()).unwrap();
        let mut spliced = b"junk before ".to_vec();
        let at = spliced.len();
        t.write_json_with_state(&mut spliced, &state_json).unwrap();
        let spliced = &spliced[at..];
        // The same document (key order aside), and the same tracker when read back.
        let a: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        let b: serde_json::Value = serde_json::from_slice(spliced).unwrap();
        assert_eq!(a, b);
        assert_eq!(spliced.len(), whole.len());
        let back: Tracker = serde_json::from_slice(spliced).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_tracker_without_a_state_is_written_whole() {
        let t = Tracker::new("bus-1");
        let mut out = Vec::new();
        t.write_json_with_state(&mut out, b"{\"never\":1}").unwrap();
        assert_eq!(out, serde_json::to_vec(&t).unwrap());
        assert!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["state"].is_null());
        assert_eq!(serde_json::from_slice::<Tracker>(&out).unwrap(), t);
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
