//! GTFS-Realtime output (docs/gtfs-realtime.md): the live vehicles as GTFS-Realtime 2.0 entities,
//! served as FULL_DATASET feeds over HTTP (through the bridge's
//! [`BrokerPort`](fleetmq_bridge::BrokerPort)) and published over MQTT as one-entity
//! `FeedMessage`s.
//!
//! Ingest hands every processed state here with the vehicle's trip fit; this module keeps the
//! latest per vehicle and answers from it. Protobuf types are the `gtfs-realtime` crate's
//! (prost-generated from the official `gtfs-realtime.proto`).
//!
//! # Layout
//! - `live`: the latest state, trip fit and deviation of each vehicle.
//! - `entity`: one vehicle as a VehiclePosition, TripUpdate or Alert entity.
//! - `feed`: the three feeds, encoded once per second however many pollers ([`Feeds`]).
//! - `publish`: the MQTT messages for a changed vehicle.

mod entity;
mod feed;
mod live;
mod publish;

pub use feed::{FeedKind, Feeds};
pub use live::{Live, LiveVehicles};
pub use publish::changed_messages;
