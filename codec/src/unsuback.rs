//! UNSUBACK (MQTT 5.0 section 3.11): packet identifier and, in v5 only, properties and one
//! reason code per filter. A 3.1.1 UNSUBACK is the packet identifier alone.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, Properties, Protocol, UnsubAck, props};

/// Reads an UNSUBACK body.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
    let pkid = crate::decode::read_pkid(&mut body)?;
    match protocol {
        Protocol::V311 => {
            crate::decode::ensure_consumed(&body)?;
            Ok(UnsubAck {
                pkid,
                codes: Vec::new(),
                properties: Properties::default(),
            })
        }
        Protocol::V5 => {
            let properties = props::read(&mut body, props::ACK, false)?;
            if body.is_empty() {
                return Err(DecodeError::Protocol("unsuback without reason codes"));
            }
            Ok(UnsubAck {
                pkid,
                codes: body.to_vec(),
                properties,
            })
        }
    }
}

/// Remaining length of an encoded UNSUBACK.
pub(crate) fn len(u: &UnsubAck, protocol: Protocol) -> usize {
    match protocol {
        Protocol::V311 => 2,
        Protocol::V5 => 2 + props::block_len(&u.properties) + u.codes.len(),
    }
}

/// Writes an UNSUBACK body.
pub(crate) fn write(
    u: &UnsubAck,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u16(u.pkid);
    if protocol == Protocol::V5 {
        props::write(out, &u.properties)?;
        out.put_slice(&u.codes);
    }
    Ok(())
}
