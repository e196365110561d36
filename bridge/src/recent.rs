//! The last events the hub saw, newest last, at most [`RECENT_EVENTS`]: what a new `/ws` or SSE
//! subscriber with `"events":true` gets in its snapshot (docs/http-api.md: at most 50), and what
//! `GET /api/v1/events` answers from when the broker keeps no history.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use geo_engine::Event;

use crate::filter::Criteria;
use crate::fleet::to_json;
use crate::hub::Hub;
use crate::port::Access;

/// Events kept (a few hundred bytes each).
pub const RECENT_EVENTS: usize = 1000;
/// Events in a snapshot at most (docs/http-api.md).
pub const SNAPSHOT_EVENTS: usize = 50;

/// A bounded ring of recent events.
#[derive(Debug, Default)]
pub struct RecentEvents(Mutex<VecDeque<Arc<Event>>>);

impl RecentEvents {
    /// Keeps `event`, forgetting the oldest past [`RECENT_EVENTS`].
    pub fn push(&self, event: Arc<Event>) {
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= RECENT_EVENTS {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// The newest `max` events that `keep` accepts, oldest first.
    pub fn newest(&self, max: usize, mut keep: impl FnMut(&Event) -> bool) -> Vec<Arc<Event>> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<Event>> = ring
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(max)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The oldest `max` events that `keep` accepts, oldest first (time-ordered queries).
    pub fn oldest(&self, max: usize, mut keep: impl FnMut(&Event) -> bool) -> Vec<Arc<Event>> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().filter(|e| keep(e)).take(max).cloned().collect()
    }
}

/// The route and trip an event is judged by: its own, else those of the vehicle's latest state
/// (as for live events in the hub).
pub(crate) fn event_route_trip(hub: &Hub, e: &Event) -> (Option<Arc<str>>, Option<Arc<str>>) {
    let latest = (e.route.is_none() || e.trip.is_none())
        .then(|| hub.latest(&e.vehicle))
        .flatten();
    let pick = |own: &Option<String>, theirs: Option<&Arc<str>>| {
        own.as_deref().map(Arc::from).or_else(|| theirs.cloned())
    };
    let route = pick(&e.route, latest.as_ref().and_then(|s| s.route.as_ref()));
    let trip = pick(&e.trip, latest.as_ref().and_then(|s| s.trip.as_ref()));
    (route, trip)
}

/// Appends `,"events":[...]` to a snapshot: the newest [`SNAPSHOT_EVENTS`] events that the
/// subscription's criteria select and the client may read, oldest first.
pub(crate) fn append_snapshot_events(
    text: &mut String,
    hub: &Hub,
    criteria: &Criteria,
    access: Option<&dyn Access>,
) {
    let events = hub.recent_events().newest(SNAPSHOT_EVENTS, |e| {
        let (route, trip) = event_route_trip(hub, e);
        criteria.matches_event(e, route.as_deref(), trip.as_deref())
            && access
                .is_none_or(|a| a.may_read_vehicle(&e.vehicle, route.as_deref(), trip.as_deref()))
    });
    text.push_str(r#","events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&to_json(&**e));
    }
    text.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_engine::EventKind;

    fn event(ts: i64) -> Arc<Event> {
        Arc::new(Event {
            kind: EventKind::Online,
            vehicle: format!("v{}", ts % 2),
            ts,
            lat: 0.0,
            lon: 0.0,
            route: None,
            trip: None,
            stop_id: None,
            stop_name: None,
            geofence_id: None,
            off_route_m: None,
            message: None,
        })
    }

    #[test]
    fn ring_is_bounded_and_ordered() {
        let r = RecentEvents::default();
        for ts in 0..(RECENT_EVENTS as i64 + 10) {
            r.push(event(ts));
        }
        let all = r.oldest(usize::MAX, |_| true);
        assert_eq!(all.len(), RECENT_EVENTS);
        assert_eq!(all[0].ts, 10);
        let last: Vec<i64> = r
            .newest(3, |e| e.vehicle == "v1")
            .iter()
            .map(|e| e.ts)
            .collect();
        assert_eq!(last, vec![1005, 1007, 1009]);
    }
}
