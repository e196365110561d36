//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0 sections 3.4 to 3.7): a packet identifier and,
//! in v5, an optional reason code and optional properties. Remaining length 2 means reason 0
//! with no properties; 3 means a reason code without a property length.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, Properties, Protocol, PubResp, props, wire};

/// Reads one of the four publish responses.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<PubResp, DecodeError> {
    let pkid = crate::decode::read_pkid(&mut body)?;
    let mut resp = PubResp {
        pkid,
        reason: 0,
        properties: Properties::default(),
    };
    if protocol == Protocol::V5 && !body.is_empty() {
        resp.reason = wire::read_u8(&mut body)?;
        if !body.is_empty() {
            resp.properties = props::read(&mut body, props::ACK, false)?;
        }
    }
    crate::decode::ensure_consumed(&body)?;
    Ok(resp)
}

/// Remaining length: the short forms when the reason is 0 and there are no properties.
pub(crate) fn len(r: &PubResp, protocol: Protocol) -> usize {
    match protocol {
        Protocol::V311 => 2,
        Protocol::V5 if props::is_empty(&r.properties) => {
            if r.reason == 0 {
                2
            } else {
                3
            }
        }
        Protocol::V5 => 3 + props::block_len(&r.properties),
    }
}

/// Writes the body, in the form [`len`] chose.
pub(crate) fn write(
    r: &PubResp,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u16(r.pkid);
    let n = len(r, protocol);
    if n >= 3 {
        out.put_u8(r.reason);
    }
    if n > 3 {
        props::write(out, &r.properties)?;
    }
    Ok(())
}
