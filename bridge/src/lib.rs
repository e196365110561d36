//! fleetmq-bridge: delivers processed vehicle state to browsers and apps over HTTP
//! (docs/http-api.md).
//!
//! It knows nothing of MQTT internals: the broker pushes processed states and events into a
//! [`Hub`], implements [`BrokerPort`] for pings, MQTT over WebSocket, metrics, readiness and
//! durable tracks, and runs [`app()`] with [`serve`].
//!
//! # Layout
//! - `port`: the [`BrokerPort`] trait the broker implements, the MQTT byte stream type, [`Access`].
//! - `auth`: the bearer token of a request, authenticated by the broker.
//! - `hub`: the [`Hub`] the broker pushes into; fan-out to interested clients.
//! - `fleet`: latest state, track ring and position grid per vehicle.
//! - `track`: the compact, bounded track points.
//! - `subs`: the subscription index (by vehicle, trip, route, grid cell).
//! - `filter`: subscription/query criteria.
//! - `grid`: bbox, grid cells, distances.
//! - `client`: one client's bounded, coalescing outgoing queue.
//! - `session`: a client's named subscriptions and their snapshots.
//! - `pump`: the writer loop and the slow-client rule.
//! - `protocol`: parsing `/ws` requests, error replies.
//! - `ws`, `sse`, `mqtt_ws`: `/ws`, `/api/v1/stream`, `/mqtt`.
//! - `rest`, `routes`, `ops`, `map`: the other endpoints.
//! - `app`: [`BridgeConfig`], [`app()`], [`serve`].
//! - `error`: [`AppError`], the one HTTP error type.
//! - `metrics`: the bridge's counters.
//!
//! # Protocol details (documented for users in docs/http-api.md)
//! - `subscribe` criteria combine: `{"route":"M10","bbox":[...]}` selects vehicles matching both.
//!   With criteria the subscription gets a snapshot and updates; `"events":true` adds the events of
//!   those vehicles. `{"events":true}` alone gets every event and an empty snapshot. Subscribing
//!   again with the same `id` replaces the subscription.
//! - A vehicle that leaves a subscription's filter (bbox, route, trip) gets one last update, so a
//!   client can drop it.
//! - Error codes: `BAD_JSON`, `UNKNOWN_OP`, `BAD_BBOX`, `BAD_REQUEST`, `NOT_SUBSCRIBED`,
//!   `TOO_MANY_SUBSCRIPTIONS`, `RATE_LIMITED` (over 20 requests in a burst or 10/s). Close
//!   codes: 1013 for a client that could not keep up, 1001 on shutdown. The server pings every
//!   30 s and drops a client silent for 90 s.
//! - `GET /api/v1/stream` takes `vehicle`, `route`, `trip`, `bbox` (combined like above; none =
//!   every vehicle), `events` (default `true`) and `max_hz`; SSE event names are the message types.
//! - `GET /api/v1/vehicles` answers `{"count":N,"vehicles":[state,...]}` (by id, or nearest first
//!   with `near`), `limit` at most 10,000; `/track` answers `{"vehicle","count","fixes":[...]}`
//!   oldest first; `POST .../ping` publishes `{"message","ts"}` and answers 202
//!   `{"status":"accepted","topic":"fleet/{id}/ping"}`.
//! - `GET /map/config.json` gives the map page its optional tile URL.
//! - Authentication: [`BrokerPort::authenticate`] gets the bearer token (`Authorization: Bearer`
//!   or `?token=`) of every `/ws`, `/api/v1/stream` and `/api/v1/vehicles...` request; 401 when
//!   it refuses. Vehicles the [`Access`] may not read are left out of lists, snapshots, updates and
//!   events and answer 404; a ping it may not send is 403. The map page passes its own `?token=`.

#![forbid(unsafe_code)]

pub mod app;
mod auth;
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
mod track;
mod ws;

pub use app::{BridgeConfig, app, serve};
pub use error::AppError;
pub use hub::{Hub, HubConfig};
pub use metrics::Metrics;
pub use port::{
    Access, AuthError, BrokerPort, MqttIo, MqttStream, OpenAccess, PortError, Readiness,
};
