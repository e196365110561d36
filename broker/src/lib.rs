//! fleetmq broker: MQTT 3.1.1/5.0 protocol handling, sessions, the topic tree, listeners and the
//! ingest hook that runs location updates through geo-engine.
//!
//! # Layout
//! - `config`: the resolved configuration ([`Config`]).
//! - `server`: binds listeners and runs everything until shutdown ([`Broker`]).
//! - `error`: start-up and run-time errors ([`Error`]).

pub mod auth;
pub mod cli;
pub mod config;
mod error;
pub mod server;

pub use config::Config;
pub use error::Error;
pub use server::Broker;
