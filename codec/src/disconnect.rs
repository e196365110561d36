//! DISCONNECT and AUTH (MQTT 5.0 sections 3.14 and 3.15): an optional reason code followed by
//! optional properties. Remaining length 0 means reason 0 without properties; 1 means a reason
//! code without a property length. A 3.1.1 DISCONNECT is always `E0 00`; AUTH is v5 only.

use bytes::{BufMut, Bytes, BytesMut};

use crate::props::{self, Allowed};
use crate::{DecodeError, EncodeError, Properties, Protocol, wire};

/// Reads the reason code and properties of a DISCONNECT or AUTH.
pub(crate) fn read(
    mut body: Bytes,
    protocol: Protocol,
    allowed: Allowed,
) -> Result<(u8, Properties), DecodeError> {
    let mut reason = 0;
    let mut properties = Properties::default();
    if protocol == Protocol::V5 && !body.is_empty() {
        reason = wire::read_u8(&mut body)?;
        if !body.is_empty() {
            properties = props::read(&mut body, allowed, false)?;
        }
    }
    crate::decode::ensure_consumed(&body)?;
    Ok((reason, properties))
}

/// Remaining length: the shortest form that carries `reason` and `properties`. `reason_only`
/// allows the one-byte form (DISCONNECT has it; AUTH must be 0 or at least 2 bytes).
pub(crate) fn len(
    reason: u8,
    properties: &Properties,
    protocol: Protocol,
    reason_only: bool,
) -> usize {
    match protocol {
        Protocol::V311 => 0,
        Protocol::V5 if props::is_empty(properties) && reason == 0 => 0,
        Protocol::V5 if props::is_empty(properties) && reason_only => 1,
        Protocol::V5 => 1 + props::block_len(properties),
    }
}

/// Writes the body in the form [`len`] chose.
pub(crate) fn write(
    reason: u8,
    properties: &Properties,
    protocol: Protocol,
    reason_only: bool,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let n = len(reason, properties, protocol, reason_only);
    if n >= 1 {
        out.put_u8(reason);
    }
    if n > 1 {
        props::write(out, properties)?;
    }
    Ok(())
}
