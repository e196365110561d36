//! SUBSCRIBE (MQTT 5.0 section 3.8): packet identifier, properties in v5, and one or more
//! (topic filter, subscription options) pairs.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, field_len};
use crate::{
    DecodeError, EncodeError, Properties, Protocol, QoS, Subscribe, SubscribeFilter, props,
};

/// Reads a SUBSCRIBE body.
pub(crate) fn read(mut body: Bytes, protocol: Protocol) -> Result<Subscribe, DecodeError> {
    let pkid = crate::decode::read_pkid(&mut body)?;
    let properties = match protocol {
        Protocol::V5 => props::read(&mut body, props::SUBSCRIBE, true)?,
        Protocol::V311 => Properties::default(),
    };
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = wire::read_string(&mut body)?;
        let options = wire::read_u8(&mut body)?;
        let reserved = match protocol {
            Protocol::V311 => 0xFC,
            Protocol::V5 => 0xC0,
        };
        if options & reserved != 0 {
            return Err(DecodeError::Malformed(
                "subscription options reserved bits set",
            ));
        }
        let qos =
            QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(DecodeError::Protocol("retain handling 3"));
        }
        filters.push(SubscribeFilter {
            filter,
            qos,
            no_local: options & 0x04 != 0,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
        });
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("subscribe without topic filters"));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

/// Remaining length of an encoded SUBSCRIBE.
pub(crate) fn len(s: &Subscribe, protocol: Protocol) -> usize {
    let filters: usize = s
        .filters
        .iter()
        .map(|f| field_len(f.filter.as_bytes()) + 1)
        .sum();
    let properties = match protocol {
        Protocol::V5 => props::block_len(&s.properties),
        Protocol::V311 => 0,
    };
    2 + properties + filters
}

/// Writes a SUBSCRIBE body; v5-only options are left out for 3.1.1.
pub(crate) fn write(
    s: &Subscribe,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.put_u16(s.pkid);
    if protocol == Protocol::V5 {
        props::write(out, &s.properties)?;
    }
    for f in &s.filters {
        wire::write_string(out, &f.filter, "topic filter")?;
        let mut options = f.qos as u8;
        if protocol == Protocol::V5 {
            options |= u8::from(f.no_local) << 2
                | u8::from(f.retain_as_published) << 3
                | (f.retain_handling & 0x03) << 4;
        }
        out.put_u8(options);
    }
    Ok(())
}
