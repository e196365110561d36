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
//! - `client`: one client's bounded, coalescing outgoing queue (per vehicle or batched).
//! - `frames`: the text of the stream frames, concatenated from shared JSON.
//! - `session`: a client's named subscriptions and their snapshots.
//! - `pump`: the writer loop and the slow-client rule.
//! - `protocol`: parsing `/ws` requests, error replies.
//! - `ws`, `sse`, `mqtt_ws`: `/ws`, `/api/v1/stream`, `/mqtt`.
//! - `ingest`: `POST /api/v1/vehicles/{id}/location` (docs/ingest-http.md), handed to the broker.
//! - `stops`: `/api/v1/vehicles/{id}/stops`, the next stops with ETAs (the map's vehicle panel).
//! - `rest`, `routes`, `ops`, `map`: the other endpoints.
//! - `history`, `history_format`: `/api/v1/vehicles/{id}/history` and `/api/v1/events`
//!   (docs/history.md).
//! - `recent`: the last events, for snapshots and `/api/v1/events` without history.
//! - `gtfsrt`: `/gtfs-rt/{feed}`, the broker's GTFS-Realtime feeds.
//! - `app`: [`BridgeConfig`], [`app()`], [`serve`].
//! - `error`: [`AppError`], the one HTTP error type.
//! - `metrics`: the bridge's counters.
//!
//! # Protocol details (documented for users in docs/http-api.md)
//! - `subscribe` criteria combine: `{"route":"M10","bbox":[...]}` selects vehicles matching both.
//!   With criteria the subscription gets a snapshot and updates; `"events":true` adds the events of
//!   those vehicles. `{"events":true}` alone gets every event and an empty snapshot. Subscribing
//!   again with the same `id` replaces the subscription.
//! - `"batch":true` (docs/http-api.md): the subscription's updates go out as one
//!   `{"type":"updates","sub":..,"vehicles":[state,...]}` frame per `1/max_hz`, holding the latest
//!   state of every vehicle that changed since the previous frame (each vehicle once; the snapshot
//!   counts as the first frame, so the first `updates` follows it by one interval). Without it,
//!   one `{"type":"update",...}` per vehicle, each coalesced at `max_hz`. A state's JSON is made
//!   once and every frame to every client is assembled from it; a client's writer feeds a batch
//!   of frames and flushes once.
//! - Memory per connection: `/ws` reads through a 1 KiB buffer (`/mqtt` 4 KiB) that grows only
//!   for a larger frame; a client's queue holds at most one state per (subscription, vehicle),
//!   1,024 events and 64 control messages, so a client that stops reading costs a bounded amount
//!   and is closed with 1013 after 30 s behind.
//! - A vehicle that leaves a subscription's filter (bbox, route, trip) gets one last update, so a
//!   client can drop it.
//! - Error codes: `BAD_JSON`, `UNKNOWN_OP`, `BAD_BBOX`, `BAD_REQUEST`, `NOT_SUBSCRIBED`,
//!   `TOO_MANY_SUBSCRIPTIONS`, `RATE_LIMITED` (over 20 requests in a burst or 10/s). Close
//!   codes: 1013 for a client that could not keep up, 1001 on shutdown. The server pings every
//!   30 s and drops a client silent for 90 s.
//! - `GET /api/v1/stream` takes `vehicle`, `route`, `trip`, `bbox` (combined like above; none =
//!   every vehicle), `events` (default `true`), `max_hz` and `batch`; SSE event names are the
//!   message types.
//! - `GET /api/v1/vehicles` answers `{"count":N,"vehicles":[state,...]}` (by id, or nearest first
//!   with `near`), `limit` at most 10,000; `/track` answers `{"vehicle","count","fixes":[...]}`
//!   oldest first; `POST .../ping` publishes `{"message","ts"}` and answers 202
//!   `{"status":"accepted","topic":"fleet/{id}/ping"}`.
//! - `POST /api/v1/vehicles/{id}/location` answers `202 {"accepted":N,"rejected":M}` (`rejected`:
//!   fixes of a batch that failed validation while others passed), `400 {"error":{"code":
//!   "INVALID","field":...}}` when nothing passed, 403 without the right to publish
//!   `fleet/{id}/location`, 413 over [`BridgeConfig::ingest_body_limit`] or the broker's batch
//!   maximum, 429 `RATE_LIMITED` with `Retry-After` (seconds) over the vehicle's publish rate.
//! - `GET /api/v1/cluster` answers `{"nodes":[{"id","mqtt","http","started_at","last_seen",
//!   "connections","vehicles"}]}` (the answering node first) to clients that read every vehicle.
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
mod frames;
pub mod grid;
mod gtfsrt;
pub mod history;
mod history_format;
pub mod hub;
mod ingest;
mod linger;
mod map;
pub mod metrics;
mod mqtt_ws;
mod ops;
pub mod port;
mod protocol;
mod pump;
mod ratelimit;
mod recent;
mod rest;
mod routes;
pub mod server;
mod session;
mod slots;
mod sse;
mod stops;
mod subs;
mod track;
mod ws;

pub use app::{BridgeConfig, app};
pub use error::AppError;
pub use hub::{Hub, HubConfig};
pub use metrics::Metrics;
pub use port::{
    Access, AuthError, BrokerPort, ClusterNode, IngestError, Ingested, MqttIo, MqttStream,
    OpenAccess, PortError, Readiness, UpcomingStops,
};
pub use server::serve;
