//! Consumers of processed state beside MQTT subscribers: the WebSocket bridge's hub and the
//! Redis writer. Calls come from the ingest path, so an implementation must return at once
//! (hand off to its own bounded queue) and never block.

use std::sync::Arc;

use geo_engine::schedule::TripFit;
use geo_engine::{Event, Tracker, VehicleState};

pub trait StateSink: Send + Sync {
    /// A new processed state.
    fn state(&self, state: &Arc<VehicleState>);
    /// A new processed state of a fix, with the trip the vehicle runs and whether it is off its
    /// route (what the GTFS-Realtime feeds need) and its JSON (made once per state, for the
    /// `vehicles/{id}` payload); by default [`StateSink::state_json`].
    fn fitted_state(
        &self,
        state: &Arc<VehicleState>,
        fit: Option<&TripFit>,
        deviated: bool,
        json: &Arc<str>,
    ) {
        let _ = (fit, deviated);
        self.state_json(state, json);
    }
    /// A new processed state with its JSON, made once per state for the `vehicles/{id}` payload:
    /// a sink that sends the JSON on (the WebSocket bridge) reuses it instead of serializing the
    /// state again.
    fn state_json(&self, state: &Arc<VehicleState>, _json: &Arc<str>) {
        self.state(state);
    }
    /// An event.
    fn event(&self, event: &Arc<Event>);
    /// The tracker after an accepted update, for durable snapshots (filter state included),
    /// with its state's JSON (the payload's; [`Tracker::write_snapshot`]).
    fn snapshot(&self, _tracker: &Tracker, _state_json: &str) {}
    /// A state restored at start-up (already durable: no need to write it back).
    fn restored(&self, state: &Arc<VehicleState>) {
        self.state(state);
    }
}
