//! The seam between the router and a store of durable sessions (`--cluster` only; the
//! implementation and the design are `crate::cluster::sessions`). A durable session is one
//! whose state must outlive its node: session expiry > 0 on a cluster node. The router keeps
//! running it in memory as before; through this seam it also
//! - asks the store to open a session before CONNACK ([`Op::Open`]: clean start deletes the
//!   stored one, clean start 0 reads it back, with its queue, on whichever node it lands),
//! - saves its record on SUBSCRIBE, UNSUBSCRIBE and DISCONNECT ([`Op::Save`]),
//! - writes each QoS 1/2 publish for durable subscribers into their queues ([`Op::Persist`])
//!   before the publisher is acknowledged, and does not deliver those copies live: they come
//!   back from the queue ([`Event::Entries`]), so a message acknowledged to its publisher is
//!   in Redis whatever node dies,
//! - reports what was sent and acknowledged ([`Op::Sent`], [`Op::Acked`]).
//!
//! The router never waits on the store: ops go through a bounded channel (`try_send`), and
//! what the store has to say comes back as [`Event`]s the router polls like messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use fleetmq_codec::QoS;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::link::{Delivery, SubOptions};
use crate::message::Message;

/// Ops waiting for the store; past it an op is not taken (see each op for what that means).
pub const OPS: usize = 65_536;

/// Counters of the store's ops (rendered by `cluster::sessions::render_metrics`): the router
/// counts the ops its full queue did not take, the store those Redis did not acknowledge.
#[derive(Debug, Default)]
pub struct OpStats {
    /// Not taken: the queue of [`OPS`] was full (or the store's task had ended).
    pub dropped_full: AtomicU64,
    /// Taken, but not done: Redis did not acknowledge the write (or the delete).
    pub dropped_unavailable: AtomicU64,
    /// Messages appended to a session's queue and acknowledged by Redis.
    pub appends: AtomicU64,
}

/// The router's end of the store's queue of ops: [`Ops::try_send`] never waits, and counts
/// what it could not hand over in [`OpStats::dropped_full`].
#[derive(Debug, Clone)]
pub struct Ops {
    tx: mpsc::Sender<Op>,
    stats: Arc<OpStats>,
}

impl Ops {
    /// A queue of `capacity` ops counted in `stats`; the receiver is the store's.
    pub fn channel(capacity: usize, stats: Arc<OpStats>) -> (Ops, mpsc::Receiver<Op>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Ops { tx, stats }, rx)
    }

    /// Hands `op` to the store, or gives it back (counted) when the queue is full or closed.
    ///
    /// # Errors
    /// The queue is full, or the store's task ended.
    pub fn try_send(&self, op: Op) -> Result<(), TrySendError<Op>> {
        self.tx.try_send(op).inspect_err(|_| {
            self.stats.dropped_full.fetch_add(1, Relaxed);
        })
    }
}

/// The id of a queue entry (a Redis stream id, `ms-seq`): entries are ordered by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for EntryId {
    type Err = ();

    fn from_str(s: &str) -> Result<EntryId, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// One subscription of a stored session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubRecord {
    /// The filter as given, `$share/G/` included.
    #[serde(rename = "f")]
    pub filter: String,
    #[serde(rename = "q")]
    pub qos: u8,
    #[serde(rename = "nl", default, skip_serializing_if = "std::ops::Not::not")]
    pub no_local: bool,
    #[serde(rename = "rap", default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_as_published: bool,
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
}

impl SubRecord {
    pub fn new(filter: &str, o: SubOptions) -> SubRecord {
        SubRecord {
            filter: filter.to_owned(),
            qos: o.qos as u8,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            id: o.id,
        }
    }

    /// The options, `None` for a QoS that is not 0, 1 or 2.
    pub fn options(&self) -> Option<SubOptions> {
        Some(SubOptions {
            qos: QoS::from_u8(self.qos)?,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            id: self.id,
        })
    }
}

/// A stored session: which node holds it, its expiry and subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub node: String,
    /// Session expiry interval, seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// Unix ms of the disconnect; absent while connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<u64>,
    #[serde(default)]
    pub subs: Vec<SubRecord>,
}

/// How far a queued message got before its session moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// PUBLISH sent with this packet id, no PUBACK/PUBREC yet: resent with DUP.
    Published(u16),
    /// QoS 2 PUBREC received for this packet id: PUBREL is resent.
    Released(u16),
}

/// A queued message read back from the store.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: EntryId,
    pub delivery: Delivery,
    pub sent: Option<Sent>,
}

/// A stored session read back by [`Op::Open`].
#[derive(Debug)]
pub struct Resumed {
    pub record: Record,
    pub entries: Vec<Stored>,
}

/// Called with whether a write reached the store.
pub type Done = Box<dyn FnOnce(bool) + Send>;

/// A durable subscriber of a message: where to queue it and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub client_id: Arc<str>,
    /// The node holding the session (woken once the message is queued).
    pub node: Arc<str>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
}

/// What the router asks of the store.
pub enum Op {
    /// Before CONNACK: delete the stored session first when `clean_start`; read it back when
    /// `load`; then write `record` (this node holds the session now). Answered by
    /// [`Event::Opened`].
    Open {
        client_id: Arc<str>,
        clean_start: bool,
        load: bool,
        record: Record,
    },
    /// Writes the record of a session this node holds (not if another node took it).
    Save {
        client_id: Arc<str>,
        record: Record,
        done: Option<Done>,
    },
    /// Deletes the stored session: when `mine_only`, only if this node still holds it.
    Forget {
        client_id: Arc<str>,
        mine_only: bool,
    },
    /// The session left this node (taken over elsewhere); what is stored stays.
    Drop { client_id: Arc<str> },
    /// Queues `message` for each target; `done` once every write is acknowledged (or failed).
    /// With `live_on_failure` (sessions of this node whose copy the publishing node did not
    /// queue), a failed write comes back as [`Event::Unstored`], to be delivered live.
    Persist {
        message: Arc<Message>,
        targets: Vec<Target>,
        done: Option<Done>,
        live_on_failure: bool,
    },
    /// Reads the session's queue after `after`, answered by [`Event::Entries`].
    Read { client_id: Arc<str>, after: EntryId },
    /// A queued message was sent with `pkid` (`released`: its PUBREC came).
    Sent {
        client_id: Arc<str>,
        id: EntryId,
        pkid: u16,
        released: bool,
    },
    /// A queued message is done (PUBACK, PUBCOMP, or dropped): out of the queue.
    Acked { client_id: Arc<str>, id: EntryId },
}

/// What the store tells the router.
#[derive(Debug)]
pub enum Event {
    /// The answer to [`Op::Open`]: `Err` when the store could not be reached (the CONNECT is
    /// refused), `Ok(None)` when nothing was stored.
    Opened {
        client_id: Arc<str>,
        result: Result<Option<Resumed>, ()>,
    },
    /// Messages of the session's queue, oldest first.
    Entries {
        client_id: Arc<str>,
        entries: Vec<Stored>,
    },
    /// New messages were queued for these sessions: read their queues.
    Wake { client_ids: Vec<Box<str>> },
    /// Not queued (Redis away): deliver to these sessions of this node live.
    Unstored {
        message: Arc<Message>,
        targets: Vec<Target>,
    },
}

/// The stored sessions a node knows of, to find a message's durable subscribers.
pub trait Table: Send + Sync {
    /// Whether any durable session is known (cheap: no lock).
    fn any(&self) -> bool;
    /// Whether a message of this kind is ever queued (the broker's processed outputs and
    /// `$SYS` are not).
    fn queues(&self, message: &Message) -> bool;
    /// The durable sessions `message` is to be queued for: a matching plain (not shared)
    /// subscription with QoS ≥ 1 after the message's own QoS, honouring no-local against
    /// `origin`, the publishing client's id.
    fn targets(&self, message: &Message, origin: Option<&str>) -> Vec<Target>;
}

/// The router's end of the store.
pub struct Link {
    pub node: Arc<str>,
    pub ops: Ops,
    pub events: mpsc::Receiver<Event>,
    pub table: Arc<dyn Table>,
}

/// A durable session's link to the store, kept in its [`super::session::Session`].
#[derive(Debug, Clone)]
pub struct SessionStore {
    pub ops: Ops,
    /// The newest queue entry this node has taken into the session.
    pub last: EntryId,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Open { .. } => "Open",
            Op::Save { .. } => "Save",
            Op::Forget { .. } => "Forget",
            Op::Drop { .. } => "Drop",
            Op::Persist { .. } => "Persist",
            Op::Read { .. } => "Read",
            Op::Sent { .. } => "Sent",
            Op::Acked { .. } => "Acked",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forget(id: &str) -> Op {
        Op::Forget {
            client_id: id.into(),
            mine_only: true,
        }
    }

    #[test]
    fn ops_past_a_full_or_closed_queue_are_counted_as_dropped() {
        let stats = Arc::new(OpStats::default());
        let (ops, mut rx) = Ops::channel(2, stats.clone());
        assert!(ops.try_send(forget("a")).is_ok());
        assert!(ops.try_send(forget("b")).is_ok());
        assert!(matches!(
            ops.try_send(forget("c")),
            Err(TrySendError::Full(Op::Forget { .. }))
        ));
        assert_eq!(stats.dropped_full.load(Relaxed), 1);
        // Taken off: room again, nothing more counted.
        assert!(rx.try_recv().is_ok());
        assert!(ops.clone().try_send(forget("d")).is_ok());
        assert_eq!(stats.dropped_full.load(Relaxed), 1);
        drop(rx);
        assert!(ops.try_send(forget("e")).is_err());
        assert_eq!(stats.dropped_full.load(Relaxed), 2);
        assert_eq!(stats.dropped_unavailable.load(Relaxed), 0);
    }

    #[test]
    fn entry_ids_parse_order_and_print() {
        let a: EntryId = "1700000000000-0".parse().expect("id");
        let b: EntryId = "1700000000000-12".parse().expect("id");
        assert!(a < b);
        assert_eq!(b.to_string(), "1700000000000-12");
        for bad in ["", "1", "1-", "-1", "a-1", "1-2-3"] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip_as_small_json() {
        let r = Record {
            node: "a".into(),
            expiry: 300,
            disconnected_at: Some(5),
            subs: vec![
                SubRecord {
                    filter: "t/#".into(),
                    qos: 1,
                    no_local: true,
                    retain_as_published: false,
                    id: Some(7),
                },
                SubRecord::new(
                    "u",
                    SubOptions {
                        qos: QoS::AtMostOnce,
                        no_local: false,
                        retain_as_published: false,
                        id: None,
                    },
                ),
            ],
        };
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(
            json,
            r#"{"node":"a","expiry":300,"disconnected_at":5,"subs":[{"f":"t/#","q":1,"nl":true,"id":7},{"f":"u","q":0}]}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&json).expect("back"), r);
        assert!(r.subs[0].options().is_some());
        let bad = SubRecord {
            qos: 3,
            ..r.subs[0].clone()
        };
        assert!(bad.options().is_none());
        assert!(serde_json::from_str::<Record>("{\"node\":1}").is_err());
    }
}
