//! Durable MQTT sessions across the cluster (issue 14, README "Running a cluster"): a session
//! with expiry > 0 on a `--cluster` node is kept in Redis, so that it resumes on any node —
//! subscriptions, queued QoS 1/2 messages, and what was in flight (resent with DUP and the
//! same packet id) — and survives `kill -9` of the node holding it. This module is the store behind the router's
//! `router::durable` seam. Keys: docs/redis.md#durable-sessions.
//!
//! # Design, and why
//! - **A record per session** in the hash `fleetmq:sessions` (client id → JSON: holding node,
//!   expiry, disconnected-at, subscriptions with their options). The holding node writes it on
//!   CONNECT (before CONNACK), SUBSCRIBE/UNSUBSCRIBE (before SUBACK/UNSUBACK) and DISCONNECT,
//!   and announces each change on `fleetmq:sessions:changed`; every node keeps a copy of the
//!   table, re-read whole every [`SYNC_EVERY`] (a lost notice costs that long).
//! - **The publishing node queues.** A QoS 1/2 publish on any node (client or will) is, for
//!   each durable session of the table with a matching plain subscription (QoS ≥ 1 after the
//!   message's QoS, no-local honoured), appended to that session's stream
//!   `{fleetmq:s:<id>}:queue` (`XADD MAXLEN <--max-queued>`), and the publisher's PUBACK /
//!   PUBREC waits until Redis acknowledged those appends. So a message acknowledged to its
//!   publisher is in Redis, whichever node dies next. Having the subscriber's node write
//!   instead would lose what was in flight between nodes when that node dies; EMQX's durable
//!   sessions likewise store messages where they are published.
//! - **Delivery from the queue.** The router does not deliver those copies live (the frames
//!   between nodes name the sessions they were queued for); after the append the publishing
//!   node wakes the holding node (frame `W` on its inbox, or an event when it is itself), which
//!   reads the stream after the last entry it took (`XRANGE`), checks the session's ACL and
//!   queues the messages as usual. Every connected durable session's stream is also read once
//!   a second, for wakes lost to a stale table or to Redis being away. QoS 0 copies and
//!   shared subscriptions stay on the live path.
//! - **Progress.** A first send records entry → packet id in `{fleetmq:s:<id>}:sent`; a QoS 2
//!   PUBREC marks it released; PUBACK/PUBCOMP deletes the entry and its mark. These writes are
//!   fire and forget: lost, a message is resent after a move as a new message (at least once
//!   holds; the same packet id and DUP only when the mark got through).
//! - **Resume.** A CONNECT with clean start 0 and no session on this node is parked; this task
//!   reads the record, the whole stream and the sent marks, writes the record naming this
//!   node, and the router completes the CONNECT (session present = a record existed), takes
//!   the subscriptions back (announcing its routes) and resends: marked entries with DUP and
//!   their packet id (PUBREL for released ones) first, then the rest in order. The node that
//!   held it is kicked by the client id claim (`routing`) and drops its copy without touching
//!   Redis. Clean start deletes record, stream and marks before the new session starts.
//! - **Expiry.** The holding node deletes the session when it expires (only if the record
//!   still names it). A session whose node died (not live in membership, or this node
//!   restarted without it) is marked disconnected by the next sync of any node and deleted
//!   once its expiry has passed; compare-and-set scripts keep a racing resume safe.
//! - **Redis Cluster.** The table is one key; a session's stream and marks share the hash tag
//!   `{fleetmq:s:<id>}`; batches go out in per-slot pipelines (`persist::conn::query_each`).
//!
//! # Redis away
//! A CONNECT that must open a durable session (expiry > 0, or clean start 0 without a local
//! session) gets CONNACK 0x88; a QoS 1/2 publish with durable subscribers whose appends are not
//! acknowledged within `persist::WRITE_WAIT` gets v5 PUBACK/PUBREC 0x80 (3.1.1: disconnected
//! without an ack), so its client sends it again. Local live delivery goes on.
//!
//! # Limits
//! A stream holds at most `--max-queued` entries: past it the oldest are trimmed by `XADD
//! MAXLEN` (and the in-memory queue drops its oldest, as on one node). Every node matches each
//! QoS 1/2 publish against the filters of every durable session that has a subscription (a
//! scan of the table; sessions without one, such as drivers', are not in it): fine for
//! thousands of subscribing durable sessions, not for millions. Every node reads the whole
//! hash every 2 s. The ops the router hands this task wait in
//! a queue of [`OPS`](crate::router::durable::OPS); past it a publish goes live only (and its
//! publisher gets the 0x80 above), a CONNECT is refused with 0x88, progress marks are lost;
//! each counted in `fleetmq_cluster_session_ops_dropped_total` ([`render_metrics`]).

mod task;
pub mod wire;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetmq_codec::QoS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Membership;
use crate::message::Message;
use crate::persist::pubsub::PubSub;
use crate::persist::{Conn, PersistError, Target};
use crate::router::durable::{self, Link, OpStats, Ops, Record, Table};
use crate::topic;

/// The records, client id → JSON.
pub const SESSIONS_KEY: &str = "fleetmq:sessions";
/// Where a node announces a record it wrote or deleted ([`wire::notice`]).
pub const SESSIONS_CHANGED: &str = "fleetmq:sessions:changed";
/// How often a node reads the whole table and expires the sessions of dead nodes.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// A session's queue (a stream; entry field `d`, [`wire::entry`]).
pub fn queue_key(client_id: &str) -> String {
    format!("{{fleetmq:s:{client_id}}}:queue")
}

/// A session's sent marks, entry id → [`wire::sent`].
pub fn sent_key(client_id: &str) -> String {
    format!("{{fleetmq:s:{client_id}}}:sent")
}

/// The table of durable sessions this node knows of (the router's [`Table`]): only those
/// with a subscription, the only ones a publish can be queued for (a fleet's drivers with
/// persistent sessions subscribe to nothing and cost nothing here).
#[derive(Default)]
pub struct Known {
    /// Replaced whole or changed in place when no reader holds it; readers clone the `Arc`
    /// and match without the lock.
    table: Mutex<Arc<HashMap<Arc<str>, Record>>>,
    count: AtomicUsize,
}

impl Known {
    fn get(&self) -> Arc<HashMap<Arc<str>, Record>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table (a full read).
    fn replace(&self, mut all: HashMap<Arc<str>, Record>) {
        all.retain(|_, r| !r.subs.is_empty());
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        self.count.store(all.len(), Relaxed);
        *t = Arc::new(all);
    }

    /// One session written (`Some`) or deleted.
    fn set(&self, client_id: &str, record: Option<Record>) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let map = Arc::make_mut(&mut t);
        match record.map(valid).filter(|r| !r.subs.is_empty()) {
            Some(r) => {
                map.insert(client_id.into(), r);
            }
            None => {
                map.remove(client_id);
            }
        }
        self.count.store(map.len(), Relaxed);
    }
}

/// A record with only the subscriptions this node can match (valid filters and QoS): Redis is
/// writable by others than fleetmq, and `topic::matches` expects valid filters. A record whose
/// node is not a node name keeps none (its node is woken on the channel it names).
fn valid(mut r: Record) -> Record {
    if !super::valid_node_id(&r.node) {
        r.subs.clear();
    }
    r.subs.retain(|s| {
        s.options().is_some()
            && topic::parse_shared(&s.filter).is_ok_and(|(_, f)| topic::validate_filter(f).is_ok())
    });
    r
}

impl Table for Known {
    fn any(&self) -> bool {
        self.count.load(Relaxed) > 0
    }

    fn queues(&self, message: &Message) -> bool {
        // Processed outputs reach every node over the bus and are latest-wins; `$SYS`
        // describes one node.
        !super::routing::is_output(message) && !message.topic.starts_with('$')
    }

    fn targets(&self, message: &Message, origin: Option<&str>) -> Vec<durable::Target> {
        if !self.queues(message) {
            return Vec::new();
        }
        let table = self.get();
        let mut out = Vec::new();
        for (client_id, r) in table.iter() {
            let mut qos = QoS::AtMostOnce;
            let mut retain = false;
            let mut sub_ids = Vec::new();
            for s in &r.subs {
                let (Ok((None, filter)), Some(o)) = (topic::parse_shared(&s.filter), s.options())
                else {
                    continue;
                };
                if !topic::matches(filter, &message.topic)
                    || (o.no_local && origin == Some(&**client_id))
                {
                    continue;
                }
                qos = qos.max(o.qos.min(message.qos));
                retain |= o.retain_as_published && message.retain;
                sub_ids.extend(o.id);
            }
            if qos != QoS::AtMostOnce {
                out.push(durable::Target {
                    client_id: client_id.clone(),
                    node: r.node.as_str().into(),
                    qos,
                    retain,
                    sub_ids,
                });
            }
        }
        out
    }
}

/// `fleetmq_cluster_session_*` metrics (README "Running a cluster", limits).
pub fn render_metrics(stats: &OpStats, out: &mut String) {
    let _ = write!(
        out,
        "# HELP fleetmq_cluster_session_ops_dropped_total Durable-session store operations not done: the queue of 65536 was full, or Redis did not acknowledge them.\n\
         # TYPE fleetmq_cluster_session_ops_dropped_total counter\n\
         fleetmq_cluster_session_ops_dropped_total{{reason=\"full\"}} {}\n\
         fleetmq_cluster_session_ops_dropped_total{{reason=\"unavailable\"}} {}\n\
         # HELP fleetmq_cluster_session_appends_total Messages appended to durable sessions' queues in Redis (acknowledged).\n\
         # TYPE fleetmq_cluster_session_appends_total counter\nfleetmq_cluster_session_appends_total {}\n",
        stats.dropped_full.load(Relaxed),
        stats.dropped_unavailable.load(Relaxed),
        stats.appends.load(Relaxed),
    );
}

/// Starts the store's task (until `stop`); returns the router's link and the table. The
/// store's ops are counted in `stats`.
///
/// # Errors
/// A `target` that is not a Redis URL.
pub fn start(
    target: &Target,
    node: Arc<str>,
    membership: Arc<Membership>,
    max_queued: usize,
    stats: Arc<OpStats>,
    stop: CancellationToken,
) -> Result<(Link, Arc<Known>), PersistError> {
    let pubsub = PubSub::open(target)?;
    let notices = pubsub.subscribe(vec![SESSIONS_CHANGED.to_owned()])?;
    let conn = Conn::open(target).map_err(|source| PersistError::Url {
        target: target.describe(),
        source,
    })?;
    let known = Arc::new(Known::default());
    let (ops, ops_rx) = Ops::channel(durable::OPS, stats.clone());
    let (events_tx, events) = mpsc::channel(1024);
    let task = task::Task {
        node: node.clone(),
        known: known.clone(),
        conn,
        publisher: pubsub.publisher(),
        membership,
        events: events_tx,
        max_queued,
        held: Default::default(),
        stats,
    };
    tokio::spawn(task.run(ops_rx, notices, stop));
    let link = Link {
        node,
        ops,
        events,
        table: known.clone(),
    };
    Ok((link, known))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Origin;
    use crate::router::durable::SubRecord;

    fn sub(filter: &str, qos: u8, no_local: bool, id: Option<u32>) -> SubRecord {
        SubRecord {
            filter: filter.into(),
            qos,
            no_local,
            retain_as_published: false,
            id,
        }
    }

    fn message(topic: &str, qos: QoS) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::new(),
            qos,
            retain: false,
            properties: None,
            expires_at: None,
            origin: Origin::Broker,
        }
    }

    #[test]
    fn a_publish_is_queued_for_matching_plain_subscriptions_with_qos_1_or_more() {
        let known = Known::default();
        assert!(!known.any());
        let record = |subs| Record {
            node: "a".into(),
            expiry: 60,
            disconnected_at: None,
            subs,
        };
        known.set(
            "s1",
            Some(record(vec![
                sub("t/+", 1, false, Some(4)),
                sub("t/#", 0, false, Some(5)),
            ])),
        );
        known.set("s2", Some(record(vec![sub("t/x", 0, false, None)])));
        known.set(
            "s3",
            Some(record(vec![sub("$share/g/t/x", 2, false, None)])),
        );
        known.set(
            "s4",
            Some(record(vec![
                sub("t/x", 2, true, None),
                sub("bad/#/x", 1, false, None),
            ])),
        );
        assert!(known.any());
        let ids = |m: &Message, origin| {
            let mut t: Vec<_> = known
                .targets(m, origin)
                .into_iter()
                .map(|t| (t.client_id.to_string(), t.qos, t.sub_ids))
                .collect();
            t.sort();
            t
        };
        assert_eq!(
            ids(&message("t/x", QoS::ExactlyOnce), None),
            vec![
                ("s1".into(), QoS::AtLeastOnce, vec![4, 5]),
                ("s4".into(), QoS::ExactlyOnce, vec![]),
            ]
        );
        // No-local: s4's own publish is not queued for it.
        assert_eq!(ids(&message("t/x", QoS::AtLeastOnce), Some("s4")).len(), 1);
        // QoS 0 publishes and non-matching topics are never queued.
        assert!(ids(&message("t/x", QoS::AtMostOnce), None).is_empty());
        assert!(ids(&message("u", QoS::AtLeastOnce), None).is_empty());
        // The broker's processed outputs are not queued either.
        assert!(ids(&message("vehicles/v1", QoS::AtLeastOnce), None).is_empty());
        known.set("s1", None);
        known.set("s4", None);
        assert!(ids(&message("t/x", QoS::ExactlyOnce), None).is_empty());
        // Sessions without a subscription are not kept.
        known.set("s2", None);
        known.set("s3", None);
        known.set("driver", Some(record(Vec::new())));
        assert!(!known.any());
        // Nor those naming something that is not a node (its wake would go to that channel).
        let mut odd = record(vec![sub("t/x", 1, false, None)]);
        odd.node = "a}:x y".into();
        known.set("odd", Some(odd));
        assert!(!known.any());
    }
}
