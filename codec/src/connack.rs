//! CONNACK (MQTT 5.0 section 3.2): session present flag, reason code and, in v5, properties.
//! 3.1.1 carries a return code 0..=5, mapped to and from v5 codes by [`crate::reason`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::{ConnAck, DecodeError, EncodeError, Properties, Protocol, props, reason, wire};

/// Reads a CONNACK body.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<ConnAck, DecodeError> {
    let flags = wire::read_u8(&mut body)?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("connack reserved flags set"));
    }
    let code = wire::read_u8(&mut body)?;
    let (code, properties) = match protocol {
        Protocol::V311 => {
            if code > 5 {
                return Err(DecodeError::Malformed("connack return code above 5"));
            }
            (reason::connack_from_v311(code), Properties::default())
        }
        // Tolerate a v5 CONNACK without a property length, as some servers send it.
        Protocol::V5 if body.is_empty() => (code, Properties::default()),
        Protocol::V5 => (code, props::read(&mut body, props::CONNACK, false)?),
    };
    crate::decode::ensure_consumed(&body)?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        code,
        properties,
    })
}

/// Remaining length of an encoded CONNACK.
pub(crate) fn len(c: &ConnAck, protocol: Protocol) -> usize {
    match protocol {
        Protocol::V311 => 2,
        Protocol::V5 => 2 + props::block_len(&c.properties),
    }
}

/// Writes a CONNACK body.
pub(crate) fn write(
    c: &ConnAck,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u8(u8::from(c.session_present));
    match protocol {
        Protocol::V311 => out.put_u8(reason::connack_v311(c.code)),
        Protocol::V5 => {
            out.put_u8(c.code);
            props::write(out, &c.properties)?;
        }
    }
    Ok(())
}
