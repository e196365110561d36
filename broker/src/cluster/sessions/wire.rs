//! The bytes durable sessions keep in Redis and send on `fleetmq:sessions:changed`:
//!
//! - a queue entry (field `d` of a stream entry): `E`, the delivery's QoS (u8), retain (u8),
//!   the count of subscription identifiers (u8, at most 255 kept) and each as a u32, then the
//!   message as a cluster frame (`frame::publish`, the MQTT v5 PUBLISH with its properties);
//! - a change notice: the client id (u16 length and bytes), then the record's JSON, or nothing
//!   when the session was deleted;
//! - a sent mark (field = entry id in `{fleetmq:s:<id>}:sent`): the packet id in decimal, with
//!   a leading `r` once the QoS 2 PUBREC came.
//!
//! Redis is writable by others than fleetmq: whatever does not parse is an error, never a
//! panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fleetmq_codec::QoS;

use crate::cluster::frame::{self, FrameError};
use crate::link::Delivery;
use crate::message::Message;
use crate::router::durable::{EntryId, Record, Sent};
use crate::router::remote::Incoming;

/// A queue entry for `qos`, `retain`, `sub_ids` and the message's cluster frame.
pub fn entry(qos: QoS, retain: bool, sub_ids: &[u32], frame: &[u8]) -> Bytes {
    let ids = &sub_ids[..sub_ids.len().min(255)];
    let mut out = BytesMut::with_capacity(4 + 4 * ids.len() + frame.len());
    out.put_u8(b'E');
    out.put_u8(qos as u8);
    out.put_u8(u8::from(retain));
    out.put_u8(ids.len() as u8);
    for id in ids {
        out.put_u32(*id);
    }
    out.put_slice(frame);
    out.freeze()
}

/// Reads a queue entry stored at `id` (its ms: when it was queued) back into a delivery, at
/// `now_ms`: the message expiry counts the time spent in the queue.
///
/// # Errors
/// [`FrameError`] for anything that is not an [`entry`].
pub fn read_entry(mut b: Bytes, id: EntryId, now_ms: u64) -> Result<Delivery, FrameError> {
    if b.remaining() < 4 || b.get_u8() != b'E' {
        return Err(FrameError::Malformed("queue entry"));
    }
    // Only QoS 1/2 copies are queued: a QoS 0 one would never be acknowledged, so never
    // leave the queue.
    let qos = QoS::from_u8(b.get_u8())
        .filter(|q| *q != QoS::AtMostOnce)
        .ok_or(FrameError::Malformed("queue entry QoS"))?;
    let retain = b.get_u8() != 0;
    let n = usize::from(b.get_u8());
    if b.remaining() < 4 * n {
        return Err(FrameError::Malformed("queue entry ids"));
    }
    let sub_ids = (0..n).map(|_| b.get_u32()).collect();
    let Incoming::Publish { message: m, .. } = frame::read(b)?.incoming else {
        return Err(FrameError::Malformed("queue entry message"));
    };
    let age = Duration::from_millis(now_ms.saturating_sub(id.ms));
    let now = Instant::now();
    let message = Arc::new(Message {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.clone(),
        expires_at: m.expires_at.map(|at| at.checked_sub(age).unwrap_or(now)),
        origin: m.origin,
    });
    Ok(Delivery {
        message,
        qos,
        retain,
        sub_ids,
        entry: Some(id),
    })
}

/// A change notice: `record` `None` when the session was deleted.
pub fn notice(client_id: &str, record: Option<&Record>) -> Bytes {
    let mut out = BytesMut::new();
    let id = &client_id.as_bytes()[..client_id.len().min(usize::from(u16::MAX))];
    out.put_u16(id.len() as u16);
    out.put_slice(id);
    if let Some(r) = record
        && let Ok(json) = serde_json::to_vec(r)
    {
        out.put_slice(&json);
    }
    out.freeze()
}

/// Reads a change notice: the client id and its record (`None`: deleted).
///
/// # Errors
/// A notice that is not one of [`notice`].
pub fn read_notice(mut b: Bytes) -> Result<(Box<str>, Option<Record>), FrameError> {
    if b.remaining() < 2 {
        return Err(FrameError::Malformed("session notice"));
    }
    let len = usize::from(b.get_u16());
    if b.remaining() < len {
        return Err(FrameError::Malformed("session notice"));
    }
    let id = b.split_to(len);
    let id = std::str::from_utf8(&id).map_err(|_| FrameError::Malformed("client id"))?;
    if b.is_empty() {
        return Ok((id.into(), None));
    }
    let record = serde_json::from_slice(&b).map_err(|_| FrameError::Malformed("record"))?;
    Ok((id.into(), Some(record)))
}

/// A sent mark's value.
pub fn sent(pkid: u16, released: bool) -> String {
    if released {
        format!("r{pkid}")
    } else {
        pkid.to_string()
    }
}

/// Reads a sent mark; `None` when it is not one of [`sent`].
pub fn read_sent(s: &str) -> Option<Sent> {
    match s.strip_prefix('r') {
        Some(p) => p.parse().ok().map(Sent::Released),
        None => s.parse().ok().map(Sent::Published),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Origin;
    use fleetmq_codec::Properties;

    fn message(expiry: Option<Duration>) -> Message {
        Message {
            topic: "t/1".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: crate::message::shared_properties(Properties {
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            }),
            expires_at: expiry.map(|e| Instant::now() + e),
            origin: Origin::Broker,
        }
    }

    #[test]
    fn entries_round_trip_with_their_delivery_options() {
        let m = message(None);
        let f = frame::publish(&m, &[], "", &[]);
        let id = EntryId { ms: 1000, seq: 3 };
        let d = read_entry(entry(QoS::AtLeastOnce, false, &[7, 9], &f), id, 1000).expect("entry");
        assert_eq!(d.qos, QoS::AtLeastOnce);
        assert!(!d.retain);
        assert_eq!(d.sub_ids, vec![7, 9]);
        assert_eq!(d.entry, Some(id));
        assert_eq!(&*d.message.topic, "t/1");
        assert_eq!(&d.message.payload[..], b"hi");
        assert_eq!(d.message.properties().user_properties.len(), 1);
        assert!(d.message.expires_at.is_none());
    }

    #[test]
    fn time_in_the_queue_counts_against_the_message_expiry() {
        let m = message(Some(Duration::from_secs(60)));
        let f = frame::publish(&m, &[], "", &[]);
        let id = EntryId {
            ms: 1_000_000,
            seq: 0,
        };
        let fresh = read_entry(entry(QoS::AtLeastOnce, false, &[], &f), id, 1_000_000).expect("e");
        let old = read_entry(entry(QoS::AtLeastOnce, false, &[], &f), id, 1_050_000).expect("e");
        let left = |d: &Delivery| d.message.remaining_expiry(Instant::now()).expect("expiry");
        assert!(left(&fresh) > 55, "{}", left(&fresh));
        assert!(left(&old) <= 10, "{}", left(&old));
        let gone = read_entry(entry(QoS::AtLeastOnce, false, &[], &f), id, 2_000_000).expect("e");
        assert!(gone.message.is_expired(Instant::now()));
    }

    #[test]
    fn garbage_entries_and_notices_are_errors() {
        let id = EntryId::default();
        let f = frame::publish(&message(None), &[], "", &[]);
        assert!(read_entry(entry(QoS::AtMostOnce, false, &[], &f), id, 0).is_err());
        for bad in [
            &b""[..],
            b"E",
            b"X\x01\x00\x00",
            b"E\x03\x00\x00P",
            b"E\x01\x00\x02\x00",
            b"E\x01\x00\x00Z",
        ] {
            assert!(
                read_entry(Bytes::copy_from_slice(bad), id, 0).is_err(),
                "{bad:?}"
            );
        }
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x05ab",
            b"\x00\x01a{",
            b"\x00\x01\xff",
        ] {
            assert!(read_notice(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn notices_and_sent_marks_round_trip() {
        let r = Record {
            node: "b".into(),
            expiry: 10,
            disconnected_at: None,
            subs: Vec::new(),
        };
        let (id, back) = read_notice(notice("c\n1", Some(&r))).expect("notice");
        assert_eq!((&*id, back), ("c\n1", Some(r)));
        let (id, back) = read_notice(notice("c", None)).expect("notice");
        assert_eq!((&*id, back), ("c", None));
        assert_eq!(read_sent(&sent(7, false)), Some(Sent::Published(7)));
        assert_eq!(read_sent(&sent(7, true)), Some(Sent::Released(7)));
        assert_eq!(read_sent("x"), None);
        assert_eq!(read_sent("r"), None);
    }
}
