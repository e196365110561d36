//! Reading and writing the MQTT 5 property block, and which properties each packet may carry.
//!
//! A block is a variable byte integer length followed by (identifier, value) pairs. Unknown
//! identifiers are `Malformed`; a known property in the wrong packet, a second copy of a
//! single-valued property, or an out-of-range value is a `Protocol` error (MQTT 5.0, 2.2.2.2).

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Properties;
use crate::wire::{self, field_len, vbi_len};
use crate::{DecodeError, EncodeError};

/// Which properties a packet may carry: bit `n` set means identifier `n` is allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowed(u64);

const fn mask(ids: &[u8]) -> Allowed {
    let mut bits = 0u64;
    let mut i = 0;
    while i < ids.len() {
        bits |= 1 << ids[i];
        i += 1;
    }
    Allowed(bits)
}

pub(crate) const PUBLISH: Allowed = mask(&[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26]);
pub(crate) const WILL: Allowed = mask(&[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26]);
pub(crate) const CONNECT: Allowed = mask(&[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27]);
pub(crate) const CONNACK: Allowed = mask(&[
    0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
    0x2A,
]);
/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) const ACK: Allowed = mask(&[0x1F, 0x26]);
pub(crate) const SUBSCRIBE: Allowed = mask(&[0x0B, 0x26]);
pub(crate) const UNSUBSCRIBE: Allowed = mask(&[0x26]);
pub(crate) const DISCONNECT: Allowed = mask(&[0x11, 0x1C, 0x1F, 0x26]);
pub(crate) const AUTH: Allowed = mask(&[0x15, 0x16, 0x1F, 0x26]);

/// Every identifier this codec knows; anything else is malformed.
const KNOWN: Allowed = mask(&[
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
]);

impl Allowed {
    fn has(self, id: usize) -> bool {
        id < 64 && self.0 & (1 << id) != 0
    }
}

/// Reads a property block (length prefix included) from the front of `buf`.
pub(crate) fn read(
    buf: &mut Bytes,
    allowed: Allowed,
    single_sub_id: bool,
) -> Result<Properties, DecodeError> {
    let len = wire::read_vbi(buf)?;
    if len > buf.len() {
        return Err(DecodeError::Malformed("property length beyond packet body"));
    }
    let mut block = buf.split_to(len);
    let mut p = Properties::default();
    while !block.is_empty() {
        let id = wire::read_vbi(&mut block)?;
        if !KNOWN.has(id) {
            return Err(DecodeError::Malformed("unknown property identifier"));
        }
        if !allowed.has(id) {
            return Err(DecodeError::Protocol("property not allowed in this packet"));
        }
        read_one(&mut block, id, &mut p)?;
        if single_sub_id && p.subscription_identifiers.len() > 1 {
            return Err(DecodeError::Protocol("duplicate property"));
        }
    }
    Ok(p)
}

/// Stores `value` in `slot`, refusing a second copy.
fn set<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("duplicate property"));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property that may only be 0 or 1.
fn flag(b: &mut Bytes) -> Result<u8, DecodeError> {
    match wire::read_u8(b)? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::Protocol("property value must be 0 or 1")),
    }
}

/// A two or four byte property that must not be zero.
fn nonzero_u16(b: &mut Bytes) -> Result<u16, DecodeError> {
    match wire::read_u16(b)? {
        0 => Err(DecodeError::Protocol("property value must not be 0")),
        v => Ok(v),
    }
}

fn read_one(b: &mut Bytes, id: usize, p: &mut Properties) -> Result<(), DecodeError> {
    use wire::{read_binary as bin, read_string as string, read_u32 as u32_};
    match id {
        0x01 => set(&mut p.payload_format_indicator, flag(b)?),
        0x02 => set(&mut p.message_expiry_interval, u32_(b)?),
        0x03 => set(&mut p.content_type, string(b)?),
        0x08 => set(&mut p.response_topic, string(b)?),
        0x09 => set(&mut p.correlation_data, bin(b)?),
        0x0B => {
            let v = wire::read_vbi(b)?;
            let v = u32::try_from(v).ok().filter(|v| *v != 0);
            let v = v.ok_or(DecodeError::Protocol("subscription identifier of 0"))?;
            p.subscription_identifiers.push(v);
            Ok(())
        }
        0x11 => set(&mut p.session_expiry_interval, u32_(b)?),
        0x12 => set(&mut p.assigned_client_identifier, string(b)?),
        0x13 => set(&mut p.server_keep_alive, wire::read_u16(b)?),
        0x15 => set(&mut p.authentication_method, string(b)?),
        0x16 => set(&mut p.authentication_data, bin(b)?),
        0x17 => set(&mut p.request_problem_information, flag(b)?),
        0x18 => set(&mut p.will_delay_interval, u32_(b)?),
        0x19 => set(&mut p.request_response_information, flag(b)?),
        0x1A => set(&mut p.response_information, string(b)?),
        0x1C => set(&mut p.server_reference, string(b)?),
        0x1F => set(&mut p.reason_string, string(b)?),
        0x21 => set(&mut p.receive_maximum, nonzero_u16(b)?),
        0x22 => set(&mut p.topic_alias_maximum, wire::read_u16(b)?),
        0x23 => set(&mut p.topic_alias, nonzero_u16(b)?),
        0x24 => set(&mut p.maximum_qos, flag(b)?),
        0x25 => set(&mut p.retain_available, flag(b)?),
        0x26 => {
            p.user_properties.push(wire::read_string_pair(b)?);
            Ok(())
        }
        0x27 => match u32_(b)? {
            0 => Err(DecodeError::Protocol("maximum packet size of 0")),
            v => set(&mut p.maximum_packet_size, v),
        },
        0x28 => set(&mut p.wildcard_subscription_available, flag(b)?),
        0x29 => set(&mut p.subscription_identifier_available, flag(b)?),
        0x2A => set(&mut p.shared_subscription_available, flag(b)?),
        _ => Err(DecodeError::Malformed("unknown property identifier")),
    }
}

/// Whether the block would be empty (lets acks and DISCONNECT use their short forms).
pub(crate) fn is_empty(p: &Properties) -> bool {
    *p == Properties::default()
}

/// Bytes of the property entries, without the length prefix.
pub(crate) fn content_len(p: &Properties) -> usize {
    let s =
        |v: &Option<bytestring::ByteString>| v.as_ref().map_or(0, |s| 1 + field_len(s.as_bytes()));
    let b = |v: &Option<Bytes>| v.as_ref().map_or(0, |d| 1 + field_len(d));
    let n = |present: bool, size: usize| if present { 1 + size } else { 0 };
    n(p.payload_format_indicator.is_some(), 1)
        + n(p.message_expiry_interval.is_some(), 4)
        + s(&p.content_type)
        + s(&p.response_topic)
        + b(&p.correlation_data)
        + p.subscription_identifiers
            .iter()
            .map(|v| 1 + vbi_len(*v as usize))
            .sum::<usize>()
        + n(p.session_expiry_interval.is_some(), 4)
        + s(&p.assigned_client_identifier)
        + n(p.server_keep_alive.is_some(), 2)
        + s(&p.authentication_method)
        + b(&p.authentication_data)
        + n(p.request_problem_information.is_some(), 1)
        + n(p.will_delay_interval.is_some(), 4)
        + n(p.request_response_information.is_some(), 1)
        + s(&p.response_information)
        + s(&p.server_reference)
        + s(&p.reason_string)
        + n(p.receive_maximum.is_some(), 2)
        + n(p.topic_alias_maximum.is_some(), 2)
        + n(p.topic_alias.is_some(), 2)
        + n(p.maximum_qos.is_some(), 1)
        + n(p.retain_available.is_some(), 1)
        + p.user_properties
            .iter()
            .map(|(k, v)| 1 + field_len(k.as_bytes()) + field_len(v.as_bytes()))
            .sum::<usize>()
        + n(p.maximum_packet_size.is_some(), 4)
        + n(p.wildcard_subscription_available.is_some(), 1)
        + n(p.subscription_identifier_available.is_some(), 1)
        + n(p.shared_subscription_available.is_some(), 1)
}

/// Bytes of the whole block, length prefix included.
pub(crate) fn block_len(p: &Properties) -> usize {
    let len = content_len(p);
    vbi_len(len) + len
}

/// Writes the whole block, length prefix included, in identifier order.
pub(crate) fn write(out: &mut BytesMut, p: &Properties) -> Result<(), EncodeError> {
    wire::write_vbi(out, content_len(p), "properties")?;
    byte(out, 0x01, p.payload_format_indicator);
    four(out, 0x02, p.message_expiry_interval);
    string(out, 0x03, &p.content_type)?;
    string(out, 0x08, &p.response_topic)?;
    binary(out, 0x09, &p.correlation_data)?;
    for v in &p.subscription_identifiers {
        out.put_u8(0x0B);
        wire::write_vbi(out, *v as usize, "subscription identifier")?;
    }
    four(out, 0x11, p.session_expiry_interval);
    string(out, 0x12, &p.assigned_client_identifier)?;
    two(out, 0x13, p.server_keep_alive);
    string(out, 0x15, &p.authentication_method)?;
    binary(out, 0x16, &p.authentication_data)?;
    byte(out, 0x17, p.request_problem_information);
    four(out, 0x18, p.will_delay_interval);
    byte(out, 0x19, p.request_response_information);
    string(out, 0x1A, &p.response_information)?;
    string(out, 0x1C, &p.server_reference)?;
    string(out, 0x1F, &p.reason_string)?;
    two(out, 0x21, p.receive_maximum);
    two(out, 0x22, p.topic_alias_maximum);
    two(out, 0x23, p.topic_alias);
    byte(out, 0x24, p.maximum_qos);
    byte(out, 0x25, p.retain_available);
    for (k, v) in &p.user_properties {
        out.put_u8(0x26);
        wire::write_string(out, k, "user property")?;
        wire::write_string(out, v, "user property")?;
    }
    four(out, 0x27, p.maximum_packet_size);
    byte(out, 0x28, p.wildcard_subscription_available);
    byte(out, 0x29, p.subscription_identifier_available);
    byte(out, 0x2A, p.shared_subscription_available);
    Ok(())
}

fn byte(out: &mut BytesMut, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn two(out: &mut BytesMut, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn four(out: &mut BytesMut, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn string(
    out: &mut BytesMut,
    id: u8,
    v: &Option<bytestring::ByteString>,
) -> Result<(), EncodeError> {
    if let Some(s) = v {
        out.put_u8(id);
        wire::write_string(out, s, "string property")?;
    }
    Ok(())
}

fn binary(out: &mut BytesMut, id: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(d) = v {
        out.put_u8(id);
        wire::write_binary(out, d, "binary property")?;
    }
    Ok(())
}
