//! End-to-end tests across crates. `tests/tests/*.rs` start real fleetmq servers on free loopback
//! ports and talk to them over sockets; `tests/python/` drives them with paho-mqtt and the
//! mosquitto clients. This library holds the shared harness.
//!
//! # Layout
//! - `server`: spawns the `fleetmq` binary on port 0 and reads its listening line ([`Server`]).
//! - `packets`: hand-written MQTT 3.1.1/5.0 packet bytes, independent of the codec under test.
//! - `raw`: a blocking raw-socket client with a deadline on every read ([`RawClient`]).
//! - `wait`: polling a condition until a deadline ([`wait_until`]).
//! - `error`: the harness's errors ([`HarnessError`]).

mod error;
pub mod packets;
mod raw;
mod server;
mod wait;

pub use error::HarnessError;
pub use raw::{RawClient, RawPacket};
pub use server::{Server, fleetmq_bin};
pub use wait::wait_until;
