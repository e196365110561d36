//! CONNECT (MQTT 5.0 section 3.1, 3.1.1 section 3.1): the only packet that carries its own
//! protocol level, so it is read and written in `Connect::protocol`, not the connection's.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, field_len};
use crate::{Connect, DecodeError, EncodeError, Properties, Protocol, QoS, Will, props};

/// Reads the protocol name and level and maps them onto a [`Protocol`].
fn read_protocol(body: &mut Bytes) -> Result<Protocol, DecodeError> {
    let name = wire::read_binary(body)?;
    let level = wire::read_u8(body)?;
    match (&name[..], level) {
        (b"MQTT", 4) | (b"MQIsdp", 3) => Ok(Protocol::V311),
        (b"MQTT", 5) => Ok(Protocol::V5),
        _ => Err(DecodeError::UnsupportedProtocol(level)),
    }
}

/// Reads a CONNECT body.
pub(crate) fn read(mut body: Bytes) -> Result<Connect, DecodeError> {
    let protocol = read_protocol(&mut body)?;
    let flags = wire::read_u8(&mut body)?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("connect reserved flag set"));
    }
    let keep_alive = wire::read_u16(&mut body)?;
    let properties = match protocol {
        Protocol::V5 => props::read(&mut body, props::CONNECT, false)?,
        Protocol::V311 => Properties::default(),
    };
    let client_id = wire::read_string(&mut body)?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = flags & 0x20 != 0;
    let will = if will_flag {
        let properties = match protocol {
            Protocol::V5 => props::read(&mut body, props::WILL, false)?,
            Protocol::V311 => Properties::default(),
        };
        let topic = wire::read_string(&mut body)?;
        let payload = wire::read_binary(&mut body)?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        if will_qos != QoS::AtMostOnce || will_retain {
            return Err(DecodeError::Malformed(
                "will QoS or retain without will flag",
            ));
        }
        None
    };
    let has_password = flags & 0x40 != 0;
    let username = if flags & 0x80 != 0 {
        Some(wire::read_string(&mut body)?)
    } else {
        None
    };
    if protocol == Protocol::V311 && has_password && username.is_none() {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let password = if has_password {
        Some(wire::read_binary(&mut body)?)
    } else {
        None
    };
    crate::decode::ensure_consumed(&body)?;
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// Remaining length of an encoded CONNECT.
pub(crate) fn len(c: &Connect) -> usize {
    let v5 = c.protocol == Protocol::V5;
    let mut n = field_len(b"MQTT") + 1 + 1 + 2 + field_len(c.client_id.as_bytes());
    if v5 {
        n += props::block_len(&c.properties);
    }
    if let Some(w) = &c.will {
        n += field_len(w.topic.as_bytes()) + field_len(&w.payload);
        if v5 {
            n += props::block_len(&w.properties);
        }
    }
    n += c.username.as_ref().map_or(0, |u| field_len(u.as_bytes()));
    n += c.password.as_ref().map_or(0, |p| field_len(p));
    n
}

/// Writes a CONNECT body.
pub(crate) fn write(c: &Connect, out: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol == Protocol::V5;
    wire::write_string(out, "MQTT", "protocol name")?;
    out.put_u8(if v5 { 5 } else { 4 });
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        props::write(out, &c.properties)?;
    }
    wire::write_string(out, &c.client_id, "client identifier")?;
    if let Some(w) = &c.will {
        if v5 {
            props::write(out, &w.properties)?;
        }
        wire::write_string(out, &w.topic, "will topic")?;
        wire::write_binary(out, &w.payload, "will payload")?;
    }
    if let Some(u) = &c.username {
        wire::write_string(out, u, "user name")?;
    }
    if let Some(p) = &c.password {
        wire::write_binary(out, p, "password")?;
    }
    Ok(())
}
