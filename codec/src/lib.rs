//! MQTT 3.1.1 and 5.0 packets and their wire format.
//!
//! The codec is synchronous and owns no socket: [`decode`] takes bytes already read into a
//! `BytesMut` and returns a whole [`Packet`] (or `None` when more bytes are needed); [`encode`]
//! appends one packet to an output buffer. Topics and payloads are zero-copy slices of the read
//! buffer (`Bytes` / `ByteString`). It is its own crate because both the broker and the bench's
//! load-generating client speak MQTT with it, and so it can be fuzzed on its own.
//!
//! # Layout
//! - `packet`: the packet types, one struct per control packet, shared by both protocol versions.
//! - `properties`: the MQTT 5 property set.
//! - `reason`: reason codes, and how v5 codes map onto v3.1.1 return codes.
//! - `error`: decode and encode errors, each mapped to the reason code the peer should be sent.
//! - `wire`: primitive readers and writers (variable byte integers, strings, binary data).
//! - `decode` / `encode`: fixed header framing and per-packet dispatch.

mod error;
mod packet;
mod properties;
pub mod reason;

pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::Properties;

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;

mod decode;
mod encode;
mod wire;

pub use decode::decode;
pub use encode::{encode, encoded_len};
