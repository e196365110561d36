//! SUBACK (MQTT 5.0 section 3.9): packet identifier, properties in v5, one code per filter.
//! 3.1.1 knows only granted QoS 0..=2 and failure 0x80, so every v5 failure becomes 0x80.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, Properties, Protocol, SubAck, props};

/// Reads a SUBACK body.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<SubAck, DecodeError> {
    let pkid = crate::decode::read_pkid(&mut body)?;
    let properties = match protocol {
        Protocol::V5 => props::read(&mut body, props::ACK, false)?,
        Protocol::V311 => Properties::default(),
    };
    if body.is_empty() {
        return Err(DecodeError::Protocol("suback without return codes"));
    }
    let codes = body.to_vec();
    if protocol == Protocol::V311 && codes.iter().any(|c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(DecodeError::Malformed("invalid suback return code"));
    }
    Ok(SubAck {
        pkid,
        codes,
        properties,
    })
}

/// Remaining length of an encoded SUBACK.
pub(crate) fn len(s: &SubAck, protocol: Protocol) -> usize {
    match protocol {
        Protocol::V311 => 2 + s.codes.len(),
        Protocol::V5 => 2 + props::block_len(&s.properties) + s.codes.len(),
    }
}

/// Writes a SUBACK body.
pub(crate) fn write(s: &SubAck, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(s.pkid);
    match protocol {
        Protocol::V311 => {
            for &c in &s.codes {
                out.put_u8(if c >= 0x80 { 0x80 } else { c });
            }
        }
        Protocol::V5 => {
            props::write(out, &s.properties)?;
            out.put_slice(&s.codes);
        }
    }
    Ok(())
}
