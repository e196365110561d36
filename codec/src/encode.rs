//! Writing packets.

use bytes::BytesMut;

use crate::{EncodeError, Packet, Protocol};

/// Appends `packet`, encoded for `protocol`, to `out`.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, protocol, out);
    Err(EncodeError::TooLong("encoder not written yet"))
}

/// The number of bytes [`encode`] would write, fixed header included.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let _ = (packet, protocol);
    0
}
