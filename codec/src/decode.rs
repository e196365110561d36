//! Fixed-header framing and per-packet dispatch for reading.

use bytes::BytesMut;

use crate::{DecodeError, Packet, Protocol};

/// Takes one whole packet off the front of `buf`.
///
/// Returns `Ok(None)` (consuming nothing) while the packet is incomplete. A packet whose
/// remaining length would make it larger than `max_packet_size` is rejected from its fixed header
/// alone. CONNECT carries its own protocol level; every other packet is read as `protocol`.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, protocol, max_packet_size);
    Err(DecodeError::Malformed("decoder not written yet"))
}
