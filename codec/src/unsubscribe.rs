//! UNSUBSCRIBE (MQTT 5.0 section 3.10): packet identifier, properties in v5, one or more topic
//! filters.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, field_len};
use crate::{DecodeError, EncodeError, Properties, Protocol, Unsubscribe, props};

/// Reads an UNSUBSCRIBE body.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<Unsubscribe, DecodeError> {
    let pkid = crate::decode::read_pkid(&mut body)?;
    let properties = match protocol {
        Protocol::V5 => props::read(&mut body, props::UNSUBSCRIBE, false)?,
        Protocol::V311 => Properties::default(),
    };
    let mut filters = Vec::new();
    while !body.is_empty() {
        filters.push(wire::read_string(&mut body)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("unsubscribe without topic filters"));
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        properties,
    })
}

/// Remaining length of an encoded UNSUBSCRIBE.
pub(crate) fn len(u: &Unsubscribe, protocol: Protocol) -> usize {
    let filters: usize = u.filters.iter().map(|f| field_len(f.as_bytes())).sum();
    let properties = match protocol {
        Protocol::V5 => props::block_len(&u.properties),
        Protocol::V311 => 0,
    };
    2 + properties + filters
}

/// Writes an UNSUBSCRIBE body.
pub(crate) fn write(
    u: &Unsubscribe,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u16(u.pkid);
    if protocol == Protocol::V5 {
        props::write(out, &u.properties)?;
    }
    for f in &u.filters {
        wire::write_string(out, f, "topic filter")?;
    }
    Ok(())
}
