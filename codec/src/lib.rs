//! MQTT 3.1.1 and 5.0 packets and their wire format.
//!
//! The codec is synchronous and owns no socket: [`decode`] takes bytes already read into a
//! `BytesMut` and returns a whole [`Packet`] (or `None` when more bytes are needed); [`encode`]
//! appends one packet to an output buffer. Topics and payloads are zero-copy slices of the read
//! buffer (`Bytes` / `ByteString`). It is its own crate because both the broker and the bench's
//! load-generating client speak MQTT with it, and so it can be fuzzed on its own.
//!
//! # Examples
//! ```
//! use fleetmq_codec::{BytesMut, Packet, Protocol, PubResp, decode, encode};
//!
//! let mut buf = BytesMut::new();
//! encode(&Packet::PubAck(PubResp::new(7)), Protocol::V5, &mut buf)?;
//! assert_eq!(&buf[..], [0x40, 0x02, 0x00, 0x07]); // v5 short form, as Mosquitto sends it
//! let packet = decode(&mut buf, Protocol::V5, 1 << 20)?;
//! assert_eq!(packet, Some(Packet::PubAck(PubResp::new(7))));
//! assert!(buf.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `packet`: the packet types, one struct per control packet, shared by both protocol versions.
//! - `properties`: the MQTT 5 property set.
//! - `reason`: reason codes, and how v5 codes map onto v3.1.1 return codes.
//! - `error`: decode and encode errors, each mapped to the reason code the peer should be sent.
//! - `wire`: primitive readers and writers (variable byte integers, strings, binary data).
//! - `props`: reading and writing the v5 property block; which properties each packet allows.
//! - `decode` / `encode`: fixed header framing and per-packet dispatch.
//! - `connect`, `connack`, `publish`, `pubresp` (PUBACK/PUBREC/PUBREL/PUBCOMP), `subscribe`,
//!   `suback`, `unsubscribe`, `unsuback`, `disconnect` (DISCONNECT and AUTH): one module per
//!   packet body, each with `read`, `len` and `write`.

mod error;
mod packet;
mod properties;
pub mod reason;

pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::Properties;

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;

mod connack;
mod connect;
mod decode;
mod disconnect;
mod encode;
mod props;
mod publish;
mod pubresp;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;
mod wire;

pub use decode::{decode, whole_packet_len};
pub use encode::{encode, encode_publish, encoded_len, publish_len};
pub use publish::PublishRef;
