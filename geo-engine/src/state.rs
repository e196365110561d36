//! What the pipeline produces: the processed state of a vehicle and the events it raises. Their
//! JSON forms are the payloads of `vehicles/{id}` and `events/{id}/{kind}`
//! (docs/topics-and-payloads.md#outputs); absent values are omitted.

mod json;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Motion status of a vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleStatus {
    Moving,
    Stopped,
    Offline,
}

/// The next stop along the vehicle's route, with the estimated time of arrival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextStop {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Metres along the route from the vehicle to the stop.
    pub distance_m: f64,
    /// Estimated arrival, Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eta: Option<i64>,
    /// Scheduled arrival of the vehicle's trip there, Unix milliseconds (docs/gtfs-realtime.md).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scheduled: Option<i64>,
    /// Predicted minus scheduled arrival, seconds (positive = late): given in the list of
    /// upcoming stops ([`crate::Tracker::upcoming_stops`]) of a trip with a timetable; never in
    /// the state's `next_stop`, whose lateness is the state's `delay_s`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delay_s: Option<i64>,
}

/// The processed state of one vehicle (`vehicles/{id}`, retained).
///
/// Its strings are shared (`Arc<str>`) with the tracker and the network (vehicle, route and
/// trip, the stop's id and name): a state per update and each copy of it take them by
/// reference count, where `String`s cost five allocations per update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleState {
    pub vehicle: Arc<str>,
    /// Smoothed position, WGS84 degrees.
    pub lat: f64,
    pub lon: f64,
    /// The fix as received.
    pub raw_lat: f64,
    pub raw_lon: f64,
    /// Device time of the fix, Unix milliseconds.
    pub ts: i64,
    /// Metres per second.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed: Option<f64>,
    /// Degrees clockwise from north.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heading: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trip: Option<Arc<str>>,
    pub status: VehicleStatus,
    /// Whether the vehicle is inside its route corridor; absent when it matched no route.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_route: Option<bool>,
    /// Cross-track distance from the matched route, metres.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub off_route_m: Option<f64>,
    /// Distance along the matched route from its start, metres.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub progress_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_stop: Option<NextStop>,
    /// Seconds behind the trip's schedule (negative: ahead), docs/gtfs-realtime.md.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delay_s: Option<i64>,
    /// `true` when fleetmq chose `trip` from the timetable (the vehicle named only its route).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trip_inferred: Option<bool>,
    /// Reported horizontal accuracy of the last fix, metres (one standard deviation), as the
    /// device sent it; the history keeps it (docs/history.md).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    /// Altitude of the last fix, metres, as the device reported it (not processed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub altitude: Option<f64>,
    /// Battery level of the device at the last fix, percent, as reported.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub battery: Option<f64>,
    /// Broker clock when the update arrived and when processing finished, Unix milliseconds.
    pub received_at: i64,
    pub processed_at: i64,
}

impl VehicleState {
    /// The smoothed position (x = lon, y = lat, degrees).
    pub fn position(&self) -> geo::Point<f64> {
        geo::Point::new(self.lon, self.lat)
    }

    /// Appends the `vehicles/{id}` JSON payload to `out`: the same bytes as
    /// `serde_json::to_writer(out, self)`, written without serde's per-field work (the payload
    /// is made once per location update).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_state(self, out);
    }
}

/// Kinds of event, as they appear in `events/{id}/{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Deviation,
    BackOnRoute,
    StopArrival,
    StopDeparture,
    GeofenceEnter,
    GeofenceExit,
    Offline,
    Online,
    Sos,
}

impl EventKind {
    /// Every kind, for readers that name kinds by [`EventKind::as_str`].
    pub const ALL: [EventKind; 9] = [
        EventKind::Deviation,
        EventKind::BackOnRoute,
        EventKind::StopArrival,
        EventKind::StopDeparture,
        EventKind::GeofenceEnter,
        EventKind::GeofenceExit,
        EventKind::Offline,
        EventKind::Online,
        EventKind::Sos,
    ];

    /// The topic segment and JSON `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Deviation => "deviation",
            EventKind::BackOnRoute => "back_on_route",
            EventKind::StopArrival => "stop_arrival",
            EventKind::StopDeparture => "stop_departure",
            EventKind::GeofenceEnter => "geofence_enter",
            EventKind::GeofenceExit => "geofence_exit",
            EventKind::Offline => "offline",
            EventKind::Online => "online",
            EventKind::Sos => "sos",
        }
    }
}

/// An event (`events/{vehicle}/{kind}`, QoS 1). Kind-specific details are optional fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub vehicle: String,
    /// Unix milliseconds.
    pub ts: i64,
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub geofence_id: Option<String>,
    /// Distance off route for deviation events, metres.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub off_route_m: Option<f64>,
    /// Free-form message (SOS text).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

impl Event {
    /// Where the event happened (x = lon, y = lat, degrees).
    pub fn position(&self) -> geo::Point<f64> {
        geo::Point::new(self.lon, self.lat)
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    /// `ALL` lists every kind once: a kind added to the enum fails to compile here until it is
    /// given its place.
    #[test]
    fn all_lists_every_kind_once() {
        let place = |k: EventKind| match k {
            EventKind::Deviation => 0,
            EventKind::BackOnRoute => 1,
            EventKind::StopArrival => 2,
            EventKind::StopDeparture => 3,
            EventKind::GeofenceEnter => 4,
            EventKind::GeofenceExit => 5,
            EventKind::Offline => 6,
            EventKind::Online => 7,
            EventKind::Sos => 8,
        };
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(place(k), i, "{k:?}");
        }
    }
}
