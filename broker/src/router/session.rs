//! One MQTT session as the router holds it: its subscriptions, the queue of messages waiting to
//! be sent, the QoS 1/2 messages in flight, and the connection it is attached to (if any).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fleetmq_codec::QoS;

use super::durable::{EntryId, Op, SessionStore};
use super::reader::Reader;
use crate::link::{ConnLink, Delivery, Outgoing, Permit, Refused, SubOptions};
use crate::metrics::Metrics;

/// Our own cap on QoS 1/2 messages in flight to one client, below any Receive Maximum it
/// announces, so a slow client pins a bounded number of messages.
pub const MAX_INFLIGHT: usize = 256;

/// Where a QoS 1/2 message in flight stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREC received and PUBREL sent; waiting for PUBCOMP.
    Released,
}

#[derive(Debug)]
pub struct Inflight {
    pub pkid: u16,
    pub delivery: Delivery,
    pub state: InflightState,
    /// Not yet (re)sent on the current connection: set for everything in flight on reconnect.
    pub unsent: bool,
}

#[derive(Debug)]
// Empty tables cost their size in every idle connection; a boxed one costs a pointer.
#[allow(clippy::box_collection)]
pub struct Session {
    pub client_id: Arc<str>,
    // `filters` and `incoming_qos2` are boxed on first use: tens of thousands of idle
    // sessions would otherwise each hold two empty tables.
    /// Filters this session subscribes to, as given (with `$share/G/` prefix), and their
    /// options: for cleanup and for the record of a durable session.
    pub filters: Option<Box<HashMap<Box<str>, SubOptions>>>,
    pub queue: VecDeque<Delivery>,
    /// Retained messages owed to new subscriptions, sent before `queue`.
    replay: VecDeque<Delivery>,
    /// Bytes held by `queue` (payload and topic), bounded by the router's byte limit.
    pub queue_bytes: usize,
    pub inflight: VecDeque<Inflight>,
    /// QoS 2 packet ids received from the client and not yet released (duplicate suppression).
    pub incoming_qos2: Option<Box<HashSet<u16>>>,
    next_pkid: u16,
    /// Seconds the session outlives its connection; `u32::MAX` never expires.
    pub expiry_interval: u32,
    /// When an unattached session expires.
    pub expires_at: Option<Instant>,
    pub link: Option<ConnLink>,
    /// The connection's link queue was full: wait for `Ready` before sending more.
    pub blocked: bool,
    /// The client's Receive Maximum: QoS 1/2 messages it accepts unacknowledged.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size.
    pub max_packet_size: usize,
    /// The client accepts topic aliases (v5 Topic Alias Maximum > 0): a message fits when its
    /// aliased form does.
    pub aliases: bool,
    /// What the client may read, when it may not read everything (boxed: most sessions have
    /// none, and every idle session would hold the cache).
    pub reader: Option<Box<Reader>>,
    /// A durable session's link to the store (`super::durable`); `None` for the others.
    pub store: Option<Box<SessionStore>>,
}

impl Session {
    pub fn new(client_id: Arc<str>) -> Session {
        Session {
            client_id,
            filters: None,
            queue: VecDeque::new(),
            replay: VecDeque::new(),
            queue_bytes: 0,
            inflight: VecDeque::new(),
            incoming_qos2: None,
            next_pkid: 0,
            expiry_interval: 0,
            expires_at: None,
            link: None,
            blocked: false,
            receive_maximum: u16::MAX,
            max_packet_size: usize::MAX,
            aliases: false,
            reader: None,
            store: None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// Hands a QoS 0 delivery straight to the connection when nothing is waiting before it
    /// and the link has room (the common case: no queue to go through); otherwise queues it
    /// and flushes.
    pub fn offer(&mut self, d: Delivery, limits: (usize, usize), now: Instant, metrics: &Metrics) {
        let direct = d.qos == QoS::AtMostOnce
            && d.message.expires_at.is_none()
            && self.queue.is_empty()
            && self.replay.is_empty()
            && !self.blocked
            && d.fits(self.max_packet_size, self.aliases);
        let d = match (&self.link, direct) {
            (Some(link), true) => {
                let item = Outgoing::Publish {
                    delivery: d,
                    pkid: 0,
                    dup: false,
                };
                match link.try_push(item) {
                    Ok(()) => return,
                    Err((Refused::Full, item)) => {
                        // As in `reserve`: raise the flag, then try once more.
                        link.want_ready();
                        match link.try_push(item) {
                            Ok(()) => return,
                            Err((_, item)) => {
                                self.blocked = true;
                                into_delivery(item)
                            }
                        }
                    }
                    Err((Refused::Closed, item)) => into_delivery(item),
                }
            }
            _ => Some(d),
        };
        if let Some(d) = d {
            self.enqueue(d, limits.0, limits.1, metrics);
            self.flush(now, metrics);
        }
    }

    /// Queues a delivery; when the queue is at `max_len` messages or `max_bytes`, the oldest
    /// are dropped (and counted) to make room.
    pub fn enqueue(&mut self, d: Delivery, max_len: usize, max_bytes: usize, metrics: &Metrics) {
        if !d.fits(self.max_packet_size, self.aliases) {
            // The client said it cannot take a packet this large; the spec says discard it.
            metrics.messages_dropped.fetch_add(1, Relaxed);
            self.report_done(d.entry);
            return;
        }
        let size = d.message.payload.len() + d.message.topic.len();
        while !self.queue.is_empty()
            && (self.queue.len() >= max_len || self.queue_bytes + size > max_bytes)
        {
            if let Some(old) = self.queue.pop_front() {
                self.queue_bytes -= old.message.payload.len() + old.message.topic.len();
                metrics.messages_dropped.fetch_add(1, Relaxed);
                self.report_done(old.entry);
            }
        }
        if max_len == 0 {
            metrics.messages_dropped.fetch_add(1, Relaxed);
            self.report_done(d.entry);
            return;
        }
        self.queue_bytes += size;
        self.queue.push_back(d);
    }

    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                self.next_pkid = 1;
            }
            let id = self.next_pkid;
            if !self.inflight.iter().any(|f| f.pkid == id) {
                return id;
            }
        }
    }

    /// Sends queued messages to the attached connection while its link has room and the
    /// client's receive maximum allows more in flight. Never waits.
    pub fn flush(&mut self, now: Instant, metrics: &Metrics) {
        if self.blocked {
            return;
        }
        // Taken out for the loop (not cloned: a clone per delivery costs two atomic operations
        // on the link's `Arc`), put back at the end.
        let Some(link) = self.link.take() else {
            return;
        };
        self.send_pending(&link, now, metrics);
        self.link = Some(link);
    }

    fn send_pending(&mut self, link: &ConnLink, now: Instant, metrics: &Metrics) {
        let window = usize::from(self.receive_maximum).min(MAX_INFLIGHT);
        if !self.resend_unsent(link, window) {
            return;
        }
        loop {
            // Retained messages for a new subscription go first and are not subject to
            // --max-queued; then the session queue.
            let replay = !self.replay.is_empty();
            let Some(front) = (if replay {
                self.replay.front()
            } else {
                self.queue.front()
            }) else {
                return;
            };
            if front.message.is_expired(now) {
                // A durable session's copy leaves its queue in Redis too (else it would come
                // back with every resume until trimmed).
                let entry = self.take_front(replay).and_then(|d| d.entry);
                self.report_done(entry);
                metrics.messages_expired.fetch_add(1, Relaxed);
                continue;
            }
            if front.qos != QoS::AtMostOnce && self.inflight.len() >= window {
                return;
            }
            let Some(permit) = self.reserve(link) else {
                return;
            };
            let Some(d) = self.take_front(replay) else {
                return;
            };
            let pkid = if d.qos == QoS::AtMostOnce {
                0
            } else {
                let pkid = self.alloc_pkid();
                if let Some(id) = d.entry {
                    self.report(id, pkid, false);
                }
                self.inflight.push_back(Inflight {
                    pkid,
                    delivery: d.clone(),
                    state: InflightState::Sent,
                    unsent: false,
                });
                pkid
            };
            permit.send(Outgoing::Publish {
                delivery: d,
                pkid,
                dup: false,
            });
        }
    }

    /// A slot in the link's queue, or `None` with the session marked blocked until the
    /// connection says `Ready`. `want_ready` is raised *before* the second try, so a
    /// connection that drains in between either sees the flag or leaves room for that second
    /// try: the wakeup cannot be lost.
    fn reserve<'a>(&mut self, link: &'a ConnLink) -> Option<Permit<'a>> {
        match link.try_reserve() {
            Ok(p) => Some(p),
            Err(Refused::Closed) => None,
            Err(Refused::Full) => {
                link.want_ready();
                match link.try_reserve() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        self.blocked = true;
                        None
                    }
                }
            }
        }
    }

    fn take_front(&mut self, replay: bool) -> Option<Delivery> {
        if replay {
            return self.replay.pop_front();
        }
        let d = self.queue.pop_front()?;
        self.queue_bytes -= d.message.payload.len() + d.message.topic.len();
        Some(d)
    }

    /// Queues a retained message for a new subscription (bounded by the retained store, whose
    /// messages it shares).
    pub fn replay(&mut self, d: Delivery, metrics: &Metrics) {
        if d.fits(self.max_packet_size, self.aliases) {
            self.replay.push_back(d);
        } else {
            metrics.messages_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Marks everything in flight to be resent (PUBLISH with DUP, or PUBREL) by the next
    /// [`Session::flush`], after a reconnect.
    pub fn mark_inflight_unsent(&mut self) {
        for f in &mut self.inflight {
            f.unsent = true;
        }
    }

    /// Resends in-flight messages marked unsent, in order, no more than the client's receive
    /// maximum at once; false when the link filled or the window is used up.
    fn resend_unsent(&mut self, link: &ConnLink, window: usize) -> bool {
        let mut outstanding = self.inflight.iter().filter(|f| !f.unsent).count();
        for i in 0..self.inflight.len() {
            if !self.inflight[i].unsent {
                continue;
            }
            if outstanding >= window {
                return false;
            }
            let Some(permit) = self.reserve(link) else {
                return false;
            };
            let f = &mut self.inflight[i];
            permit.send(match f.state {
                InflightState::Sent => Outgoing::Publish {
                    delivery: f.delivery.clone(),
                    pkid: f.pkid,
                    dup: true,
                },
                InflightState::Released => Outgoing::PubRel(f.pkid),
            });
            f.unsent = false;
            outstanding += 1;
        }
        true
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the message is done.
    pub fn complete(&mut self, pkid: u16) -> bool {
        match self.inflight.iter().position(|f| f.pkid == pkid) {
            Some(i) => {
                let done = self.inflight.remove(i).and_then(|f| f.delivery.entry);
                self.report_done(done);
                true
            }
            None => false,
        }
    }

    /// PUBREC from the client: the message is received; PUBREL follows.
    pub fn released(&mut self, pkid: u16) -> bool {
        match self.inflight.iter_mut().find(|f| f.pkid == pkid) {
            Some(f) => {
                f.state = InflightState::Released;
                if let Some(id) = f.delivery.entry {
                    self.report(id, pkid, true);
                }
                true
            }
            None => false,
        }
    }

    /// Tells a durable session's store that queue entry `id` went out as `pkid` (or was
    /// released). Fire and forget: when the store's queue is full the entry is resent after a
    /// move as a new message (at least once still holds).
    fn report(&self, id: EntryId, pkid: u16, released: bool) {
        if let Some(store) = &self.store {
            let _ = store.ops.try_send(Op::Sent {
                client_id: self.client_id.clone(),
                id,
                pkid,
                released,
            });
        }
    }

    /// Tells the store that queue entry `id` (if any) is done: acknowledged or dropped.
    fn report_done(&self, id: Option<EntryId>) {
        if let (Some(store), Some(id)) = (&self.store, id) {
            let _ = store.ops.try_send(Op::Acked {
                client_id: self.client_id.clone(),
                id,
            });
        }
    }

    /// Takes back what a moved durable session had in flight (resent first, with DUP or as
    /// PUBREL) and queued, in queue order.
    /// Queued ones are held to `limits` (`--max-queued`, `--max-queued-bytes`) as any queued
    /// message: what Redis holds is not trusted to fit.
    pub fn resume(
        &mut self,
        entries: Vec<super::durable::Stored>,
        limits: (usize, usize),
        metrics: &Metrics,
    ) {
        use super::durable::Sent;
        for e in entries {
            let mut d = e.delivery;
            d.entry = Some(e.id);
            let state = match e.sent {
                Some(Sent::Published(pkid)) => Some((pkid, InflightState::Sent)),
                Some(Sent::Released(pkid)) => Some((pkid, InflightState::Released)),
                None => None,
            };
            match state {
                Some((pkid, state))
                    if pkid != 0
                        && d.qos != QoS::AtMostOnce
                        && self.inflight.len() < MAX_INFLIGHT
                        && !self.inflight.iter().any(|f| f.pkid == pkid) =>
                {
                    self.inflight.push_back(Inflight {
                        pkid,
                        delivery: d,
                        state,
                        unsent: true,
                    });
                }
                _ => self.enqueue(d, limits.0, limits.1, metrics),
            }
        }
    }
}

/// The delivery inside an item the link gave back.
fn into_delivery(item: Outgoing) -> Option<Delivery> {
    match item {
        Outgoing::Publish { delivery, .. } => Some(delivery),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::link::ConnId;
    use crate::message::{Message, Origin};
    use crate::router::durable::{OpStats, Ops, Stored};

    /// The router's part of every session (boxed in its map).
    #[test]
    fn session_stays_small() {
        assert!(std::mem::size_of::<super::Session>() <= 320);
    }

    /// A durable session's queued copy of a 10-byte message, entry `n`.
    fn stored(n: u64, expires_at: Option<Instant>) -> Stored {
        let id = EntryId { ms: n, seq: 0 };
        Stored {
            id,
            delivery: Delivery {
                message: Arc::new(Message {
                    topic: "t".into(),
                    payload: Bytes::from_static(b"0123456789"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: None,
                    expires_at,
                    origin: Origin::Broker,
                }),
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: Vec::new(),
                entry: Some(id),
            },
            sent: None,
        }
    }

    fn durable() -> (Session, mpsc::Receiver<Op>) {
        let (ops, rx) = Ops::channel(64, Arc::new(OpStats::default()));
        let mut s = Session::new("d".into());
        s.store = Some(Box::new(SessionStore {
            ops,
            last: EntryId::default(),
        }));
        (s, rx)
    }

    /// The entries the store was told are done.
    fn acked(rx: &mut mpsc::Receiver<Op>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(op) = rx.try_recv() {
            if let Op::Acked { id, .. } = op {
                out.push(id.ms);
            }
        }
        out
    }

    #[test]
    fn a_resumed_queue_is_held_to_the_queue_limits() {
        let metrics = Metrics::default();
        let (mut s, mut rx) = durable();
        // Five 11-byte messages into a queue of at most 3 messages and 25 bytes: the oldest
        // go, and leave the queue in Redis too.
        s.resume(
            (1..=5).map(|n| stored(n, None)).collect(),
            (3, 25),
            &metrics,
        );
        assert_eq!(s.queue.len(), 2);
        assert_eq!(acked(&mut rx), vec![1, 2, 3]);
        let (mut s, mut rx) = durable();
        s.resume(
            (1..=5).map(|n| stored(n, None)).collect(),
            (3, 1000),
            &metrics,
        );
        assert_eq!(s.queue.len(), 3);
        assert_eq!(acked(&mut rx), vec![1, 2]);
    }

    #[test]
    fn an_expired_queued_copy_leaves_the_stored_queue() {
        let metrics = Metrics::default();
        let (mut s, mut rx) = durable();
        let now = Instant::now();
        s.resume(
            vec![stored(1, Some(now)), stored(2, None)],
            (10, 1000),
            &metrics,
        );
        s.link = Some(ConnLink::new(ConnId(1)));
        s.flush(now + Duration::from_secs(1), &metrics);
        assert_eq!(acked(&mut rx), vec![1]);
        assert_eq!(metrics.messages_expired.load(Relaxed), 1);
        assert_eq!(s.inflight.len(), 1);
    }
}
