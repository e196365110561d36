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

/// A PUBLISH to write, borrowing its parts: a broker sending one message to many clients
/// encodes each copy from the shared message without cloning (and dropping) its fields.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in v5 when a topic alias property stands in for it.
    pub topic: &'a str,
    /// Packet identifier; ignored for QoS 0.
    pub pkid: u16,
    /// Written in v5 only.
    pub properties: &'a Properties,
    pub payload: &'a [u8],
}

impl Publish {
    /// This packet as a [`PublishRef`].
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            pkid: self.pkid,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

/// The fixed header's low nibble.
pub(crate) fn flags(p: &PublishRef<'_>) -> u8 {
    u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

/// Remaining length of an encoded PUBLISH.
pub(crate) fn len(p: &PublishRef<'_>, protocol: Protocol) -> usize {
    let mut n = field_len(p.topic.as_bytes()) + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        n += 2;
    }
    if protocol == Protocol::V5 {
        n += props::block_len(p.properties);
    }
    n
}

/// Writes a PUBLISH body straight into `out`: no intermediate buffer.
pub(crate) fn write(
    p: &PublishRef<'_>,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    wire::write_string(out, p.topic, "topic")?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.pkid);
    }
    if protocol == Protocol::V5 {
        props::write(out, p.properties)?;
    }
    out.put_slice(p.payload);
    Ok(())
}
