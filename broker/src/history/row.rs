//! One history row as the writer copies it: a processed state (`fleetmq_positions`) or an event
//! (`fleetmq_events`), with the column lists and binary COPY types of each table.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use geo_engine::{Event, VehicleState};
use tokio_postgres::types::{Json, ToSql, Type};

/// What ingest hands over: the shared state or event itself, so the ingest path only bumps a
/// reference count; the writer turns it into columns.
pub(crate) enum Row {
    Position(Arc<VehicleState>),
    Event(Arc<Event>),
}

impl Row {
    /// Device time, Unix milliseconds (the partition key).
    pub(crate) fn ts(&self) -> i64 {
        match self {
            Row::Position(s) => s.ts,
            Row::Event(e) => e.ts,
        }
    }
}

/// The last millisecond of the year 9999: query bounds past it are clamped to it.
const MAX_MS: i64 = 253_402_300_799_999;

/// Unix milliseconds as a `timestamptz` value, clamped to 1970..=9999 (validation never accepts
/// fixes outside; an open query bound like `i64::MAX` becomes the year 9999).
pub(crate) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64)
}

pub(crate) const POSITION_COPY: &str = "COPY fleetmq_positions_stage (vehicle, ts, lat, lon, \
    raw_lat, raw_lon, speed, heading, accuracy, route, trip, on_route, off_route_m, delay_s, \
    received_at) FROM STDIN (FORMAT binary)";

pub(crate) const POSITION_TYPES: [Type; 15] = [
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::FLOAT8,
    Type::INT4,
    Type::TIMESTAMPTZ,
];

/// The columns of one position row, in [`POSITION_COPY`] order.
pub(crate) struct PositionColumns<'a> {
    s: &'a VehicleState,
    /// The state's shared strings as the `&str`s the driver encodes.
    vehicle: &'a str,
    route: Option<&'a str>,
    trip: Option<&'a str>,
    ts: SystemTime,
    received_at: SystemTime,
    /// The schedule delay (GTFS timetables loaded), clamped into the column's `int4`.
    delay_s: Option<i32>,
}

impl<'a> PositionColumns<'a> {
    pub(crate) fn new(s: &'a VehicleState) -> Self {
        PositionColumns {
            s,
            vehicle: &s.vehicle,
            route: s.route.as_deref(),
            trip: s.trip.as_deref(),
            ts: time(s.ts),
            received_at: time(s.received_at),
            delay_s: s
                .delay_s
                .map(|d| i32::try_from(d).unwrap_or(if d < 0 { i32::MIN } else { i32::MAX })),
        }
    }

    pub(crate) fn values(&self) -> [&(dyn ToSql + Sync); 15] {
        let s = self.s;
        [
            &self.vehicle,
            &self.ts,
            &s.lat,
            &s.lon,
            &s.raw_lat,
            &s.raw_lon,
            &s.speed,
            &s.heading,
            &s.accuracy,
            &self.route,
            &self.trip,
            &s.on_route,
            &s.off_route_m,
            &self.delay_s,
            &self.received_at,
        ]
    }
}

pub(crate) const EVENT_COPY: &str =
    "COPY fleetmq_events_stage (vehicle, ts, kind, subject, payload) FROM STDIN (FORMAT binary)";

pub(crate) const EVENT_TYPES: [Type; 5] = [
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
];

/// The columns of one event row, in [`EVENT_COPY`] order.
pub(crate) struct EventColumns<'a> {
    e: &'a Event,
    ts: SystemTime,
    kind: &'static str,
    subject: &'a str,
    payload: Json<&'a Event>,
}

impl<'a> EventColumns<'a> {
    pub(crate) fn new(e: &'a Event) -> Self {
        EventColumns {
            e,
            ts: time(e.ts),
            kind: e.kind.as_str(),
            subject: e
                .stop_id
                .as_deref()
                .or(e.geofence_id.as_deref())
                .unwrap_or(""),
            payload: Json(e),
        }
    }

    pub(crate) fn values(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.e.vehicle,
            &self.ts,
            &self.kind,
            &self.subject,
            &self.payload,
        ]
    }
}
