//! geo-engine: the location pipeline of fleetmq as a pure library.
//!
//! No tokio, no I/O: every function takes the clock value it needs, so a trace replayed with the
//! same inputs gives the same outputs. The broker calls it inline for every location update.
//!
//! # Layout
//! - `state`: the processed vehicle state and events, as published on `vehicles/{id}` and
//!   `events/{id}/{kind}` (SPEC §6).

pub mod state;

pub use state::{Event, EventKind, NextStop, VehicleState, VehicleStatus};
