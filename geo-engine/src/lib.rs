//! geo-engine: the location pipeline of fleetmq as a pure library.
//!
//! No tokio, no I/O: loaders take text or bytes, every function takes the clock value it needs,
//! so a trace replayed with the same inputs gives the same outputs. The broker calls it inline
//! for every location update: [`parse_fixes`], then [`Tracker::process`] per vehicle against a
//! shared [`Network`].
//!
//! Positions are [`geo::Point`]s (x = longitude, y = latitude, degrees) at every public boundary
//! and [`Local`] metres inside a [`LocalFrame`]. The JSON mirrors ([`Fix`], [`VehicleState`],
//! [`Event`]) keep the payloads' `lat`/`lon` fields and give the `Point` by `position()`.
//!
//! # Layout
//! - [`fix`]: the input `Fix` (docs/topics-and-payloads.md#location-updates) and its JSON parsing,
//!   one object or a batch.
//! - [`validate`]: stage 1, plausibility checks; [`RejectReason`] and [`Rejection`].
//! - [`dedup`]: stage 2, duplicates by `ts`/`seq`.
//! - [`jitter`]: stage 3, stationary wobble filter.
//! - [`kalman`]: stage 4, constant-velocity Kalman filter in local metres.
//! - [`corridor`]: stage 5, route geometry in metres and matching (cross-track, progress).
//! - [`deviation`]: stage 6, deviation / back on route with hysteresis.
//! - [`stops`]: stage 6, stop arrival/departure, next stop and ETA.
//! - [`geofence`]: stage 6, geofence enter/exit.
//! - [`tracker`]: per-vehicle state running the stages in order, offline/online.
//! - [`network`]: routes, stops, geofences and the segment R-trees.
//! - [`geojson`], [`gtfs`]: route loaders.
//! - [`thresholds`]: per-route thresholds from the route file.
//! - [`zones`]: extra geofence polygons (`--zones`) for any network.
//! - [`schedule`]: GTFS timetables, service days, trip inference, delay and predictions.
//! - [`simulate`](mod@simulate): deterministic trace simulator.
//! - [`state`]: the processed state and events (docs/topics-and-payloads.md#outputs payloads).
//! - [`config`]: [`PipelineConfig`], thresholds with docs/pipeline.md defaults.
//! - [`local`]: coordinates — WGS84 [`geo::Point`]s (x = lon, y = lat), the [`Local`] metric
//!   frame, great-circle distance (geo's `Haversine`).
//! - [`error`]: errors of the route loaders ([`LoadError`]).

pub mod config;
pub mod corridor;
pub mod dedup;
pub mod deviation;
pub mod error;
pub mod fix;
pub mod geofence;
pub mod geojson;
pub mod gtfs;
pub mod jitter;
pub mod kalman;
pub mod local;
pub mod network;
pub mod schedule;
pub mod simulate;
pub mod state;
pub mod stops;
pub mod thresholds;
pub mod tracker;
pub mod validate;
pub mod zones;

pub use config::PipelineConfig;
pub use error::LoadError;
pub use fix::{Fix, parse_fixes};
pub use geo::{Coord, Point};
pub use local::{Local, LocalFrame};
pub use network::{Network, Summary};
pub use simulate::{SimConfig, SimFix, SimKind, Simulator, simulate};
pub use state::{Event, EventKind, NextStop, VehicleState, VehicleStatus};
pub use tracker::{Outcome, Tracker};
pub use validate::{RejectReason, Rejection};
