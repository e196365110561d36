//! Fixed-header framing and per-packet dispatch for reading.
//!
//! Buffer, then check, then parse: the fixed header is checked (and an oversized packet
//! rejected) before the body has arrived; once the whole packet is buffered it is split off as
//! one frozen `Bytes` that every field reader slices without copying.

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::{self, Vbi};
use crate::{Auth, DecodeError, Disconnect, Packet, Protocol};
use crate::{
    connack, connect, disconnect, props, publish, pubresp, suback, subscribe, unsuback, unsubscribe,
};

/// Takes one whole packet off the front of `buf`.
///
/// Returns `Ok(None)` (consuming nothing) while the packet is incomplete. A packet whose
/// remaining length would make it larger than `max_packet_size` is rejected from its fixed header
/// alone. CONNECT carries its own protocol level; every other packet is read as `protocol`.
///
/// # Errors
/// Any [`DecodeError`]; the buffer is then in an unspecified state and the connection should be
/// closed (after a v5 DISCONNECT carrying [`DecodeError::reason_code`]).
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, size)) = frame(buf, max_packet_size)? else {
        return Ok(None);
    };
    let first = buf[0];
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header_len);
    read_packet(first, frame, protocol).map(Some)
}

/// Whether one whole packet is buffered at the front of `buf`: its size once it is, checked
/// against `max_packet_size` as [`decode`] checks it; nothing is consumed.
///
/// # Errors
/// A malformed fixed header, or a packet larger than `max_packet_size`.
pub fn whole_packet_len(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, DecodeError> {
    Ok(frame(buf, max_packet_size)?.map(|(_, size)| size))
}

/// The fixed header's length and the packet's size, once it is all buffered.
fn frame(buf: &[u8], max_packet_size: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (remaining, vbi_len) = match wire::parse_vbi(&buf[1..])? {
        Vbi::Complete(value, len) => (value, len),
        Vbi::Incomplete => return Ok(None),
    };
    let header_len = 1 + vbi_len;
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        // No `reserve(size)` here: memory should grow with bytes received, not bytes announced,
        // or a peer could pin `max_packet_size` per connection by sending four bytes.
        return Ok(None);
    }
    Ok(Some((header_len, size)))
}

/// Parses the body of one complete packet whose fixed header's first byte is `first`.
fn read_packet(first: u8, body: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0F;
    let expected_flags = match kind {
        3 => flags,
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected_flags {
        return Err(DecodeError::Malformed("reserved fixed header flags"));
    }
    let packet = match kind {
        1 => Packet::Connect(connect::read(body)?),
        2 => Packet::ConnAck(connack::read(body, protocol)?),
        3 => Packet::Publish(publish::read(flags, body, protocol)?),
        4 => Packet::PubAck(pubresp::read(body, protocol)?),
        5 => Packet::PubRec(pubresp::read(body, protocol)?),
        6 => Packet::PubRel(pubresp::read(body, protocol)?),
        7 => Packet::PubComp(pubresp::read(body, protocol)?),
        8 => Packet::Subscribe(subscribe::read(body, protocol)?),
        9 => Packet::SubAck(suback::read(body, protocol)?),
        10 => Packet::Unsubscribe(unsubscribe::read(body, protocol)?),
        11 => Packet::UnsubAck(unsuback::read(body, protocol)?),
        12 => {
            ensure_consumed(&body)?;
            Packet::PingReq
        }
        13 => {
            ensure_consumed(&body)?;
            Packet::PingResp
        }
        14 => {
            let (reason, properties) = disconnect::read(body, protocol, props::DISCONNECT)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        15 if protocol == Protocol::V5 => {
            let (reason, properties) = disconnect::read(body, protocol, props::AUTH)?;
            Packet::Auth(Auth { reason, properties })
        }
        15 => return Err(DecodeError::Malformed("AUTH in MQTT 3.1.1")),
        _ => return Err(DecodeError::Malformed("reserved packet type 0")),
    };
    Ok(packet)
}

/// A packet body must be used up exactly by its fields.
pub(crate) fn ensure_consumed(body: &Bytes) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed(
            "unexpected bytes at the end of the packet",
        ))
    }
}

/// Reads a packet identifier, which must not be 0.
pub(crate) fn read_pkid(body: &mut Bytes) -> Result<u16, DecodeError> {
    match wire::read_u16(body)? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        pkid => Ok(pkid),
    }
}
