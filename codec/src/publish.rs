//! PUBLISH (MQTT 5.0 section 3.3): topic, packet identifier for QoS 1 and 2, properties in v5,
//! and the payload as a zero-copy slice of the read buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, field_len};
use crate::{DecodeError, EncodeError, Properties, Protocol, Publish, QoS, props};

/// Reads a PUBLISH; `flags` is the low nibble of the fixed header (DUP, QoS, RETAIN).
pub(crate) fn read(flags: u8, mut body: Bytes, protocol: Protocol) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("publish QoS 3"))?;
    let dup = flags & 0x08 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 publish"));
    }
    let topic = wire::read_string(&mut body)?;
    if topic.is_empty() && protocol == Protocol::V311 {
        return Err(DecodeError::Protocol("empty topic name"));
    }
    let pkid = if qos == QoS::AtMostOnce {
        0
    } else {
        crate::decode::read_pkid(&mut body)?
    };
    let properties = match protocol {
        Protocol::V5 => props::read(&mut body, props::PUBLISH, false)?,
        Protocol::V311 => Properties::default(),
    };
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        pkid,
        properties,
        payload: body,
    })
}

/// The fixed header's low nibble.
pub(crate) fn flags(p: &Publish) -> u8 {
    u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

/// Remaining length of an encoded PUBLISH.
pub(crate) fn len(p: &Publish, protocol: Protocol) -> usize {
    let mut n = field_len(p.topic.as_bytes()) + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        n += 2;
    }
    if protocol == Protocol::V5 {
        n += props::block_len(&p.properties);
    }
    n
}

/// Writes a PUBLISH body straight into `out`: no intermediate buffer.
pub(crate) fn write(
    p: &Publish,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    wire::write_string(out, &p.topic, "topic")?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.pkid);
    }
    if protocol == Protocol::V5 {
        props::write(out, &p.properties)?;
    }
    out.put_slice(&p.payload);
    Ok(())
}
