//! [`VehicleSlot`]: what ingest keeps of one vehicle between its updates.

use std::sync::{Mutex, MutexGuard};

use fleetmq_codec::ByteString;
use geo_engine::Tracker;

/// One vehicle's tracker and its `vehicles/{id}` topic.
///
/// The topic is made once per vehicle and shared by every state message of it: a topic made
/// per update cost an allocation and a copy, and a second allocation the first time the
/// message's topic was cloned (a `Bytes` made from a `String` becomes shared on its first
/// clone), all freed again when the retained store replaced the message.
pub(super) struct VehicleSlot {
    tracker: Mutex<Tracker>,
    state_topic: ByteString,
}

impl VehicleSlot {
    pub(super) fn new(tracker: Tracker) -> VehicleSlot {
        let state_topic = super::state_topic(tracker.vehicle());
        VehicleSlot {
            tracker: Mutex::new(tracker),
            state_topic,
        }
    }

    /// The tracker, under the vehicle's lock (held for one update; never across an await).
    pub(super) fn lock(&self) -> MutexGuard<'_, Tracker> {
        // A panic inside the pipeline leaves the tracker as it was before that fix.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `vehicles/{id}`, shared: cloning it copies nothing.
    pub(super) fn state_topic(&self) -> ByteString {
        self.state_topic.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_topic_of_a_vehicle_is_one_buffer() {
        let slot = VehicleSlot::new(Tracker::new("bus-7"));
        let (a, b) = (slot.state_topic(), slot.state_topic());
        assert_eq!(&*a, "vehicles/bus-7");
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert_eq!(slot.lock().vehicle(), "bus-7");
    }
}
