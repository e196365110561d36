//! fleetmq-bridge: delivers processed vehicle state to browsers and apps over HTTP (SPEC §7).
//!
//! It knows nothing of MQTT internals: the broker pushes processed states and events into a
//! [`Hub`], implements [`BrokerPort`] for pings, MQTT over WebSocket, metrics, readiness and
//! durable tracks, and runs [`app`] with [`serve`].
//!
//! # Layout
//! - `port`: the [`BrokerPort`] trait the broker implements, and the MQTT byte stream type.
//! - `hub`: the [`Hub`] the broker pushes into; fan-out to interested clients.
//! - `fleet`: latest state, track ring and position grid per vehicle.
//! - `subs`: the subscription index (by vehicle, trip, route, grid cell).
//! - `filter`: subscription/query criteria.
//! - `grid`: bbox, grid cells, distances.
//! - `client`: one client's bounded, coalescing outgoing queue.
//! - `session`: a client's named subscriptions and their snapshots.
//! - `pump`: the writer loop and the slow-client rule.
//! - `protocol`: parsing `/ws` requests, error replies.
//! - `ws`, `sse`, `mqtt_ws`: `/ws`, `/api/v1/stream`, `/mqtt`.
//! - `rest`, `routes`, `ops`, `map`: the other endpoints.
//! - `app`: [`BridgeConfig`], [`app`], [`serve`].
//! - `error`: [`AppError`], the one HTTP error type.
//! - `metrics`: the bridge's counters.

#![forbid(unsafe_code)]

pub mod app;
mod client;
pub mod error;
mod filter;
mod fleet;
pub mod grid;
pub mod hub;
mod map;
pub mod metrics;
mod mqtt_ws;
mod ops;
pub mod port;
mod protocol;
mod pump;
mod rest;
mod routes;
mod session;
mod sse;
mod subs;
mod ws;

pub use app::{BridgeConfig, app, serve};
pub use error::AppError;
pub use hub::{Hub, HubConfig};
pub use metrics::Metrics;
pub use port::{BrokerPort, MqttIo, MqttStream, PortError, Readiness};
