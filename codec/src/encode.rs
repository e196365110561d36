//! Writing packets: fixed header, then the per-packet body writer.
//!
//! The exact size is computed first, reserved once, then written straight into the caller's
//! buffer; on error the buffer is truncated back, so a failed encode writes nothing.

use bytes::{BufMut, BytesMut};

use crate::publish::PublishRef;
use crate::wire::{self, VBI_MAX, vbi_len};
use crate::{EncodeError, Packet, Protocol};
use crate::{
    connack, connect, disconnect, publish, pubresp, suback, subscribe, unsuback, unsubscribe,
};

/// Appends `packet`, encoded for `protocol`, to `out`.
///
/// CONNECT is written in its own `Connect::protocol`. For 3.1.1, v5-only fields (properties,
/// reason codes on acks) are left out, the CONNACK code is mapped with
/// [`crate::reason::connack_v311`] and SUBACK failures become 0x80. For v5 the short forms are
/// used whenever the reason is 0 and there are no properties.
///
/// # Errors
/// `TooLong` when a string, binary field or the packet exceeds MQTT's length fields;
/// `NotInProtocol` for AUTH in 3.1.1.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    if matches!(packet, Packet::Auth(_)) && protocol == Protocol::V311 {
        return Err(EncodeError::NotInProtocol("AUTH"));
    }
    let remaining = remaining_len(packet, protocol);
    if remaining > VBI_MAX {
        return Err(EncodeError::TooLong("packet"));
    }
    let start = out.len();
    out.reserve(1 + vbi_len(remaining) + remaining);
    let result = write(packet, protocol, remaining, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends one PUBLISH written from borrowed parts, as [`encode`] would write the same
/// [`crate::Publish`]. With `max_len`, a packet longer than that is not written and
/// `Ok(false)` says so (a client's Maximum Packet Size).
///
/// # Errors
/// `TooLong` when the topic or the packet exceeds MQTT's length fields.
pub fn encode_publish(
    p: &PublishRef<'_>,
    protocol: Protocol,
    max_len: usize,
    out: &mut BytesMut,
) -> Result<bool, EncodeError> {
    let remaining = publish::len(p, protocol);
    if remaining > VBI_MAX {
        return Err(EncodeError::TooLong("packet"));
    }
    let total = publish_len(p, protocol);
    if total > max_len {
        return Ok(false);
    }
    let start = out.len();
    out.reserve(total);
    out.put_u8(0x30 | publish::flags(p));
    let result =
        wire::write_vbi(out, remaining, "packet").and_then(|()| publish::write(p, protocol, out));
    if result.is_err() {
        out.truncate(start);
    }
    result.map(|()| true)
}

/// The number of bytes [`encode_publish`] writes for `p`, fixed header included: the size a
/// receiver's Maximum Packet Size is compared with.
pub fn publish_len(p: &PublishRef<'_>, protocol: Protocol) -> usize {
    let remaining = publish::len(p, protocol);
    1 + vbi_len(remaining) + remaining
}

/// The number of bytes [`encode`] would write, fixed header included.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let remaining = remaining_len(packet, protocol);
    1 + vbi_len(remaining) + remaining
}

/// The fixed header's first byte: type in the high nibble, flags in the low one.
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => 0x30 | publish::flags(&p.as_ref()),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

fn remaining_len(packet: &Packet, protocol: Protocol) -> usize {
    match packet {
        Packet::Connect(c) => connect::len(c),
        Packet::ConnAck(c) => connack::len(c, protocol),
        Packet::Publish(p) => publish::len(&p.as_ref(), protocol),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            pubresp::len(r, protocol)
        }
        Packet::Subscribe(s) => subscribe::len(s, protocol),
        Packet::SubAck(s) => suback::len(s, protocol),
        Packet::Unsubscribe(u) => unsubscribe::len(u, protocol),
        Packet::UnsubAck(u) => unsuback::len(u, protocol),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => disconnect::len(d.reason, &d.properties, protocol, true),
        Packet::Auth(a) => disconnect::len(a.reason, &a.properties, protocol, false),
    }
}

fn write(
    packet: &Packet,
    protocol: Protocol,
    remaining: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u8(first_byte(packet));
    wire::write_vbi(out, remaining, "packet")?;
    match packet {
        Packet::Connect(c) => connect::write(c, out),
        Packet::ConnAck(c) => connack::write(c, protocol, out),
        Packet::Publish(p) => publish::write(&p.as_ref(), protocol, out),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            pubresp::write(r, protocol, out)
        }
        Packet::Subscribe(s) => subscribe::write(s, protocol, out),
        Packet::SubAck(s) => suback::write(s, protocol, out),
        Packet::Unsubscribe(u) => unsubscribe::write(u, protocol, out),
        Packet::UnsubAck(u) => unsuback::write(u, protocol, out),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => disconnect::write(d.reason, &d.properties, protocol, true, out),
        Packet::Auth(a) => disconnect::write(a.reason, &a.properties, protocol, false, out),
    }
}
