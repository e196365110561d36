//! fleetmq broker: MQTT 3.1.1/5.0 protocol handling, sessions, the topic tree, listeners and the
//! ingest hook that runs location updates through geo-engine.
//!
//! # Layout
//! - `config`: every setting, declared once on [`Config`] (flag, env, TOML key, default).
//! - `server`: binds listeners and runs everything until shutdown ([`Broker`]).
//! - `error`: start-up and run-time errors ([`Error`]).
//! - `demo`: simulated buses for `fleetmq demo`.
//! - `listener`: the TCP and TLS accept loop.
//! - `tls`: rustls configuration from PEM files; the client certificate's CN.
//! - `limits`: connect rate per IP, publish rate per client, failed-login back-off.
//! - `http`: the broker's side of the HTTP bridge.
//! - `https`: the bridge over TLS (`--https`).
//! - `routes`: reading the route network file.
//! - `ingest`: location updates through geo-engine, processed state back out.
//! - `history`: every fix and event in PostgreSQL, day partitions, retention
//!   (docs/history.md).
//! - `gtfsrt`: GTFS-Realtime feeds (HTTP, cached per second) and MQTT entities
//!   (docs/gtfs-realtime.md).
//! - `osmand`: the OsmAnd / Traccar Client listener (`--osmand`, `--osmands`).
//! - `cluster`: several nodes on one Redis: membership, processed outputs across nodes, vehicle
//!   leases (docs/redis.md#leases).
//! - `persist`: Redis snapshots, restore on start, the track and the SOS log (docs/redis.md).
//! - `connection`: one client connection: handshake, inbound packets, the writer.
//! - `context`: what connections share (router channel, limits, metrics, shutdown).
//! - `router`: the single owner of sessions, subscriptions and retained messages.
//! - `link`: the router ↔ connection contract (messages, queue, ids), shared by both.
//! - `message`: an application message as routed.
//! - `hash`: the seeded fast hasher of the maps every update looks up.
//! - `topic`: topic name and filter rules.
//! - `metrics`: counters for `$SYS` and Prometheus.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
mod connection;
mod context;
pub mod demo;
mod error;
pub mod gtfsrt;
mod hash;
pub mod history;
mod http;
mod https;
pub mod ingest;
mod limits;
mod link;
mod listener;
mod message;
pub mod metrics;
mod osmand;
pub mod persist;
mod router;
pub mod routes;
pub mod server;
mod sos_log;
mod tls;
mod topic;
pub mod trips;

pub use config::Config;
pub use error::Error;
pub use server::Broker;
