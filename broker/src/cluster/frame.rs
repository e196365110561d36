//! What one node sends another on its inbox channel (`fleetmq:inbox:{node}`), as bytes:
//!
//! - `P`, then the shared groups the receiver is to serve (u16 count, each a u16 length and
//!   the `$share/G/F` bytes), then the retained stamp (u16 length and bytes, empty unless the
//!   message is retained; `routing` orders retained sets and clears by it), then the message as an MQTT v5 PUBLISH packet written by the
//!   codec (its properties carry the remaining message expiry). Reusing the wire format
//!   keeps every property a client gave. Between the stamp and the PUBLISH, the client ids
//!   (u16 count, each a u16 length and bytes) of the durable sessions the sender queued the
//!   message for (`sessions`): the receiver does not deliver it to them live.
//! - `K`, then a client id: that client connected to the sending node.
//! - `W`, then client ids as above: messages were queued for these durable sessions, which
//!   the receiver holds; it reads their queues.
//!
//! Frames come from other fleetmq nodes through Redis, but Redis is reachable by others:
//! a frame that does not parse is an error, never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fleetmq_codec::{Packet, Protocol, PublishRef};

use crate::link::Delivery;
use crate::message::{Message, Origin};
use crate::router::remote::Incoming;

/// Largest frame read: a PUBLISH of the largest MQTT packet plus the group names.
const MAX_FRAME: usize = 256 * 1024 * 1024 + 64 * 1024;

/// Why a frame was not understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cluster frame: {0}")]
    Malformed(&'static str),
    #[error("cluster frame: {0}")]
    Publish(#[from] fleetmq_codec::DecodeError),
}

/// A message read from a frame with its retained stamp (empty when there is none).
#[derive(Debug)]
pub struct Received {
    pub incoming: Incoming,
    pub stamp: Box<str>,
}

/// A message for another node, which serves the groups in `shared` of it; `stamp` orders a
/// retained message (`""` for others).
pub fn publish(message: &Message, shared: &[&str], stamp: &str, durable: &[Arc<str>]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(b'P');
    put_strs(&mut out, shared.iter().copied());
    // A stamp is a few dozen bytes (`routing::stamp`).
    let stamp = if u16::try_from(stamp.len()).is_ok() {
        stamp
    } else {
        ""
    };
    out.put_u16(stamp.len() as u16);
    out.put_slice(stamp.as_bytes());
    put_strs(&mut out, durable.iter().map(|s| &**s));
    let delivery = Delivery {
        message: Arc::new(Message {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos: message.qos,
            retain: message.retain,
            properties: message.properties.clone(),
            expires_at: message.expires_at,
            origin: Origin::Broker,
        }),
        qos: message.qos,
        retain: message.retain,
        sub_ids: Vec::new(),
        entry: None,
    };
    let properties = delivery.wire_properties(None, Instant::now());
    let packet = PublishRef {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: &message.topic,
        pkid: 1,
        properties: &properties,
        payload: &message.payload,
    };
    // The message came from a valid PUBLISH or the broker: it fits MQTT's lengths.
    let _ = fleetmq_codec::encode_publish(&packet, Protocol::V5, usize::MAX, &mut out);
    out.freeze()
}

/// A u16 count and each string as a u16 length and bytes; at most u16::MAX strings of at most
/// u16::MAX bytes (filters and client ids are MQTT strings: they fit).
fn put_strs<'a>(out: &mut BytesMut, strs: impl Iterator<Item = &'a str>) {
    let strs: Vec<&str> = strs
        .filter(|s| u16::try_from(s.len()).is_ok())
        .take(usize::from(u16::MAX))
        .collect();
    out.put_u16(strs.len() as u16);
    for s in &strs {
        out.put_u16(s.len() as u16);
        out.put_slice(s.as_bytes());
    }
}

fn take_strs(frame: &mut Bytes, what: &'static str) -> Result<Vec<Box<str>>, FrameError> {
    let count = take_u16(frame)?;
    let mut out = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        out.push(take_str(frame, what)?);
    }
    Ok(out)
}

/// Tells a node that messages were queued for these durable sessions it holds.
pub fn wake(client_ids: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(b'W');
    put_strs(&mut out, client_ids.iter().copied());
    out.freeze()
}

/// Tells a node that `client_id` connected elsewhere.
pub fn kick(client_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + client_id.len());
    out.put_u8(b'K');
    out.put_slice(client_id.as_bytes());
    out.freeze()
}

/// Reads a frame; the message it carries has [`Origin::Broker`] (a foreign session id means
/// nothing here).
///
/// # Errors
/// [`FrameError`] for anything that is not a frame of [`publish`] or [`kick`].
pub fn read(mut frame: Bytes) -> Result<Received, FrameError> {
    if !frame.has_remaining() {
        return Err(FrameError::Malformed("empty"));
    }
    match frame.get_u8() {
        b'K' => {
            let id = std::str::from_utf8(&frame).map_err(|_| FrameError::Malformed("client id"))?;
            Ok(Received {
                incoming: Incoming::Kick {
                    client_id: id.into(),
                },
                stamp: "".into(),
            })
        }
        b'W' => Ok(Received {
            incoming: Incoming::Wake {
                client_ids: take_strs(&mut frame, "client id")?,
            },
            stamp: "".into(),
        }),
        b'P' => {
            let shared = take_strs(&mut frame, "group name")?;
            let stamp = take_str(&mut frame, "stamp")?;
            let durable = take_strs(&mut frame, "client id")?;
            let mut buf = BytesMut::from(&frame[..]);
            let Some(Packet::Publish(mut p)) =
                fleetmq_codec::decode(&mut buf, Protocol::V5, MAX_FRAME)?
            else {
                return Err(FrameError::Malformed("not a PUBLISH"));
            };
            let expires_at = p
                .properties
                .message_expiry_interval
                .take()
                .map(|s| Instant::now() + Duration::from_secs(s.into()));
            let message = Arc::new(Message {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: crate::message::shared_properties(p.properties),
                expires_at,
                origin: Origin::Broker,
            });
            Ok(Received {
                incoming: Incoming::Publish {
                    message,
                    shared,
                    durable,
                },
                stamp,
            })
        }
        _ => Err(FrameError::Malformed("unknown kind")),
    }
}

/// A u16 length and that many bytes of UTF-8.
fn take_str(b: &mut Bytes, what: &'static str) -> Result<Box<str>, FrameError> {
    let len = usize::from(take_u16(b)?);
    if b.remaining() < len {
        return Err(FrameError::Malformed(what));
    }
    let s = b.split_to(len);
    std::str::from_utf8(&s)
        .map(Box::from)
        .map_err(|_| FrameError::Malformed(what))
}

fn take_u16(b: &mut Bytes) -> Result<u16, FrameError> {
    if b.remaining() < 2 {
        return Err(FrameError::Malformed("truncated"));
    }
    Ok(b.get_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetmq_codec::{Properties, QoS};

    #[test]
    fn a_publish_round_trips_with_its_groups_and_properties() {
        let properties = Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        };
        let m = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: crate::message::shared_properties(properties.clone()),
            expires_at: Some(Instant::now() + Duration::from_secs(60)),
            origin: Origin::Broker,
        };
        let durable: Arc<str> = "d1".into();
        let received = read(publish(&m, &["$share/g/a/+"], "stamp", &[durable])).expect("frame");
        assert_eq!(&*received.stamp, "stamp");
        let Incoming::Publish {
            message,
            shared,
            durable,
        } = received.incoming
        else {
            panic!("not a publish");
        };
        assert_eq!(&*message.topic, "a/b");
        assert_eq!(&message.payload[..], b"hello");
        assert_eq!(message.qos, QoS::AtLeastOnce);
        assert!(message.retain);
        assert_eq!(message.properties(), &properties);
        assert!(message.expires_at.is_some());
        assert_eq!(shared, vec![Box::from("$share/g/a/+")]);
        assert_eq!(durable, vec![Box::from("d1")]);
    }

    #[test]
    fn kicks_round_trip_and_garbage_is_an_error() {
        assert!(
            matches!(read(kick("x")), Ok(Received { incoming: Incoming::Kick { client_id }, .. }) if &*client_id == "x")
        );
        assert!(
            matches!(read(wake(&["a", "b"])), Ok(Received { incoming: Incoming::Wake { client_ids }, .. }) if client_ids.len() == 2 && &*client_ids[1] == "b")
        );
        for bad in [
            &b""[..],
            b"W\x00\x02\x00\x01a",
            b"Z",
            b"P\x00",
            b"P\x00\x01\x00\x05ab",
            b"P\x00\x00\x00\x00\x00\x00\x30\x7f",
            b"P\x00\x00\x00\x09ab",
        ] {
            assert!(read(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
