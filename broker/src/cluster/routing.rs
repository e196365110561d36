//! MQTT between nodes (issue 14): [`ClusterRemote`], the router's [`Remote`] in a cluster. It
//! owns the route table (which node subscribes to which filter), forwarding a publish to the
//! nodes that match it, client id takeover across nodes and the retained messages every node
//! shares. Redis keys and channels: docs/redis.md#cluster-routing.
//!
//! # Routes
//! Each node keeps its filters (with a count of local subscriptions per filter) and announces
//! them in the set `fleetmq:routes:{node}`: `SADD` when a filter's count goes 0 → 1, `SREM`
//! at 1 → 0, then a `PUBLISH fleetmq:routes:changed` so that the others read the sets again.
//! Every [`SYNC_EVERY`] the node rewrites its whole set (healing a change lost while Redis
//! was away) and reads every live node's set (membership), so a lost notification costs at
//! most that long. Nodes that are not live are left out of the table, which is a trie
//! (`route_table`): matching a publish costs its topic's depth, not the number of filters.
//!
//! # Forwarding
//! A publish on this node is delivered locally by the router, then [`ClusterRemote::forward`]
//! sends it at most once to each other node, on that node's inbox `fleetmq:inbox:{node}`:
//! - to a node with a matching plain filter (it then delivers once per local subscription);
//! - for each matching shared group `$share/G/F` with no member on this node, to one node
//!   holding members, in turn (that node picks its member); a group with a member here was
//!   served by the local delivery already, so the group gets one copy cluster-wide;
//! - a retained publish (set or clear) to every live node, so each keeps the same retained
//!   store; it is also written to the hash `{fleetmq:retained}:messages`, which a node reads
//!   when it starts.
//!
//! # Retained: the last one wins everywhere
//! A retained set or clear carries a stamp, `{unix ms:016}:{node}`, later than any stamp this
//! node saw for the topic. Every node keeps the newest stamp per topic (clears included) and
//! stores an incoming retained message only when its stamp is newer; an older one is still
//! delivered to current subscribers, as a plain message. Redis keeps the same order: a script
//! writes `{fleetmq:retained}:messages` only when the stamp beats the one in
//! `{fleetmq:retained}:stamps`. So a set on A and a clear on B in the same moment end the same
//! on every node and in Redis: the one with the later stamp (wall clocks: with skewed clocks,
//! "later" is the later clock reading, not the later event).
//!
//! The frame (`frame`) names the groups the receiving node serves; a received message is
//! delivered locally only, never forwarded again. Processed outputs (`vehicles/...`,
//! `events/...` from the broker itself) are not forwarded: the cluster bus (`outputs`) already
//! carries them to every node; nor are the broker's GTFS-Realtime entities (`gtfsrt/...`),
//! which stay on the node that processed the vehicle.
//!
//! # Client ids
//! A connect sets `fleetmq:client:{id}` to this node (`SET ... GET`); if it named another node,
//! that node gets a kick on its inbox and ends its connection (DISCONNECT 0x8E) and session.
//! When a session ends here the key is deleted if it still names this node, so the keys
//! follow the sessions that exist.
//!
//! # Redis away
//! Local delivery goes on; forwards, announcements and claims are dropped (pub/sub is fire
//! and forget, counted in `fleetmq_redis_pubsub_*`); the periodic sync restores the tables
//! once Redis is back. Meanwhile other nodes' subscribers miss this node's publishes, and a
//! client id may be connected on two nodes at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Membership;
use super::frame;
use super::route_sync::{self, RouteSync};
use super::route_table::RouteTable;
use crate::message::{Message, Origin};
use crate::persist::pubsub::{PubSub, Publisher};
use crate::persist::{Conn, Target};
use crate::router::remote::{Incoming, Remote};

/// Announcement that a node's filters changed (the payload names the node).
pub const ROUTES_CHANGED: &str = "fleetmq:routes:changed";
/// Retained messages of the cluster, topic → frame.
pub const RETAINED_KEY: &str = "{fleetmq:retained}:messages";
/// The newest stamp of each retained topic, topic → stamp (kept after a clear).
pub const RETAINED_STAMPS_KEY: &str = "{fleetmq:retained}:stamps";
/// How often a node rewrites its filters and reads the others'.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Route changes, claims and retained writes waiting for Redis; past it they are dropped and
/// the next sync repairs the routes.
const COMMANDS: usize = 10_000;

/// The set of a node's filters.
pub fn routes_key(node: &str) -> String {
    format!("fleetmq:routes:{node}")
}

/// The channel a node receives forwarded messages and kicks on.
pub fn inbox(node: &str) -> String {
    format!("fleetmq:inbox:{node}")
}

/// Which node holds a client id's connection.
pub fn client_key(client_id: &str) -> String {
    format!("fleetmq:client:{client_id}")
}

/// What the router and the sync task share; locked briefly, never across `.await`.
#[derive(Default)]
pub(super) struct Shared {
    /// The other live nodes' filters, as last read.
    pub(super) table: Mutex<Arc<RouteTable>>,
    /// This node's filters and how many local subscriptions hold each.
    pub(super) local: Mutex<HashMap<Box<str>, usize>>,
    pub(super) refresh: Notify,
}

/// Work for the sync task (`route_sync`).
pub(super) enum Command {
    Add(Box<str>),
    Remove(Box<str>),
    Claim(Box<str>),
    Release(Box<str>),
    Retain {
        topic: String,
        stamp: Box<str>,
        frame: Option<Bytes>,
    },
}

/// How long a node remembers a retained topic's stamp: far longer than a message takes
/// between nodes, so that only racing messages are compared; the table stays as small as the
/// retained traffic of that time, whatever topics clients make up.
const STAMP_MEMORY: Duration = Duration::from_secs(60);
/// Stamps inserted between two prunings of the older ones.
const PRUNE_EVERY: usize = 1024;

/// The Unix ms of a stamp.
fn stamp_ms(stamp: &str) -> Option<u64> {
    stamp.get(..16)?.parse().ok()
}

/// A retained stamp later than `previous` (of the same topic) and than now.
fn stamp(node: &str, previous: Option<&str>) -> Box<str> {
    let now = u64::try_from(crate::ingest::now_ms()).unwrap_or(0);
    let after = previous.and_then(stamp_ms).map_or(0, |ms| ms + 1);
    format!("{:016}:{node}", now.max(after)).into()
}

/// The router's [`Remote`] in a cluster.
pub struct ClusterRemote {
    node: Arc<str>,
    shared: Arc<Shared>,
    publisher: Publisher,
    commands: mpsc::Sender<Command>,
    incoming: mpsc::Receiver<(String, Bytes)>,
    /// Retained messages read from Redis at start, until the router takes them.
    loaded: Vec<frame::Received>,
    /// The newest retained stamp of each topic seen in the last [`STAMP_MEMORY`] (`stamp`).
    stamps: HashMap<Box<str>, Box<str>>,
    /// Stamps inserted since the last pruning.
    inserted: usize,
    /// Round-robin over the nodes of a shared group.
    turn: usize,
}

impl ClusterRemote {
    /// Subscribes to this node's inbox, reads the cluster's retained messages and starts the
    /// sync task (until `stop`).
    ///
    /// # Errors
    /// A `target` that is not a Redis URL.
    pub async fn start(
        target: &Target,
        node: Arc<str>,
        membership: Arc<Membership>,
        stop: CancellationToken,
    ) -> Result<ClusterRemote, crate::persist::PersistError> {
        let pubsub = PubSub::open(target)?;
        let incoming = pubsub.subscribe(vec![inbox(&node), ROUTES_CHANGED.to_owned()])?;
        let mut conn = Conn::open(target).map_err(|source| crate::persist::PersistError::Url {
            target: target.describe(),
            source,
        })?;
        let shared = Arc::new(Shared::default());
        let (commands, rx) = mpsc::channel(COMMANDS);
        let loaded = route_sync::load_retained(&mut conn).await;
        let sync = RouteSync {
            node: node.clone(),
            shared: shared.clone(),
            membership,
            conn,
            publisher: pubsub.publisher(),
        };
        tokio::spawn(sync.run(rx, stop));
        Ok(ClusterRemote {
            node,
            shared,
            publisher: pubsub.publisher(),
            commands,
            incoming,
            loaded,
            stamps: HashMap::new(),
            inserted: 0,
            turn: 0,
        })
    }

    /// Records a topic's newest stamp; now and then forgets those older than
    /// [`STAMP_MEMORY`].
    fn remember(&mut self, topic: &str, stamp: Box<str>) {
        self.stamps.insert(topic.into(), stamp);
        self.inserted += 1;
        if self.inserted >= PRUNE_EVERY {
            self.inserted = 0;
            let now = u64::try_from(crate::ingest::now_ms()).unwrap_or(0);
            let oldest = now.saturating_sub(STAMP_MEMORY.as_millis() as u64);
            self.stamps
                .retain(|_, s| stamp_ms(s).is_some_and(|ms| ms >= oldest));
        }
    }

    fn command(&self, c: Command) {
        // Full: Redis is away or slow; the periodic sync repairs the route set.
        let _ = self.commands.try_send(c);
    }

    /// What to deliver of a received frame: a retained message older than this node's
    /// newest of its topic is delivered as a plain message, not stored.
    fn accept(&mut self, received: frame::Received) -> Incoming {
        let frame::Received { incoming, stamp } = received;
        let Incoming::Publish {
            message,
            shared,
            durable,
        } = incoming
        else {
            return incoming;
        };
        if !message.retain || stamp.is_empty() {
            return Incoming::Publish {
                message,
                shared,
                durable,
            };
        }
        let topic: &str = &message.topic;
        if self.stamps.get(topic).is_some_and(|seen| *seen >= stamp) {
            let message = Arc::new(Message {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos,
                retain: false,
                properties: message.properties.clone(),
                expires_at: message.expires_at,
                origin: Origin::Broker,
            });
            return Incoming::Publish {
                message,
                shared,
                durable,
            };
        }
        self.remember(topic, stamp);
        Incoming::Publish {
            message,
            shared,
            durable,
        }
    }
}

/// Whether `message` is one of the broker's processed outputs: `vehicles/...` and
/// `events/...`, which the cluster bus carries to every node already, and the GTFS-Realtime
/// entities (`gtfsrt/...`), which stay on the node that processed the vehicle (README
/// "Running a cluster"; forwarding them would make each vehicle update a retained write to
/// every node and to Redis).
pub(super) fn is_output(message: &Message) -> bool {
    message.origin == Origin::Broker
        && ["vehicles/", "events/", "gtfsrt/"]
            .iter()
            .any(|p| message.topic.starts_with(p))
}

impl Remote for ClusterRemote {
    fn forward(&mut self, message: &Arc<Message>, durable: &[Arc<str>]) {
        if is_output(message) {
            return;
        }
        let topic = &*message.topic;
        let stamp = if message.retain {
            let s = stamp(&self.node, self.stamps.get(topic).map(|s| &**s));
            self.remember(topic, s.clone());
            s
        } else {
            "".into()
        };
        // node index → groups it serves; `direct` when a plain filter matches.
        let table = self
            .shared
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut sends: Vec<(bool, Vec<&str>)> =
            vec![(message.retain, Vec::new()); table.nodes().len()];
        let mut group_nodes: HashMap<&str, Vec<usize>> = HashMap::new();
        table.for_each_match(topic, |node, group| {
            let node = node as usize;
            match group {
                None => sends[node].0 = true,
                Some(g) => group_nodes.entry(g).or_default().push(node),
            }
        });
        if !group_nodes.is_empty() {
            let local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
            for (group, nodes) in group_nodes {
                if local.contains_key(group) {
                    continue; // delivered to a member here already
                }
                self.turn = self.turn.wrapping_add(1);
                let pick = nodes[self.turn % nodes.len()];
                sends[pick].1.push(group);
            }
        }
        for (node, (direct, groups)) in table.nodes().iter().zip(&sends) {
            if *direct || !groups.is_empty() {
                self.publisher.publish(
                    &inbox(node),
                    frame::publish(message, groups, &stamp, durable),
                );
            }
        }
        if message.retain {
            let frame =
                (!message.payload.is_empty()).then(|| frame::publish(message, &[], &stamp, &[]));
            self.command(Command::Retain {
                topic: message.topic.to_string(),
                stamp,
                frame,
            });
        }
    }

    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        loop {
            let Some((channel, payload)) = std::task::ready!(self.incoming.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            if channel == ROUTES_CHANGED {
                if *payload != *self.node.as_bytes() {
                    self.shared.refresh.notify_one();
                }
                continue;
            }
            match frame::read(payload) {
                Ok(r) => return Poll::Ready(Some(self.accept(r))),
                Err(e) => tracing::warn!(error = %e, "cluster: unreadable inbox frame; skipped"),
            }
        }
    }

    fn preloaded(&mut self) -> Vec<Incoming> {
        let loaded = std::mem::take(&mut self.loaded);
        loaded.into_iter().map(|r| self.accept(r)).collect()
    }

    fn subscribed(&mut self, filter: &str) {
        let mut local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
        let n = local.entry(filter.into()).or_default();
        *n += 1;
        if *n == 1 {
            drop(local);
            self.command(Command::Add(filter.into()));
        }
    }

    fn unsubscribed(&mut self, filter: &str) {
        let mut local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
        let Some(n) = local.get_mut(filter) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            local.remove(filter);
            drop(local);
            self.command(Command::Remove(filter.into()));
        }
    }

    fn connected(&mut self, client_id: &str) {
        self.command(Command::Claim(client_id.into()));
    }

    fn ended(&mut self, client_id: &str) {
        self.command(Command::Release(client_id.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::{Message, Origin, is_output, stamp, stamp_ms};

    #[test]
    fn the_brokers_processed_outputs_are_not_forwarded() {
        let m = |topic: &str, origin| Message {
            topic: topic.into(),
            payload: bytes::Bytes::new(),
            qos: fleetmq_codec::QoS::AtMostOnce,
            retain: false,
            properties: None,
            expires_at: None,
            origin,
        };
        for t in [
            "vehicles/v1",
            "events/v1/sos",
            "gtfsrt/vehicle-positions/v1",
        ] {
            assert!(is_output(&m(t, Origin::Broker)), "{t}");
            let client = Origin::Session(crate::link::SessionId(1));
            assert!(!is_output(&m(t, client)), "{t} from a client");
        }
        assert!(!is_output(&m("fleet/v1/location", Origin::Broker)));
    }

    #[test]
    fn stamps_order_by_time_then_node_and_always_move_forward() {
        let first = stamp("a", None);
        let ms = stamp_ms(&first).expect("ms");
        // A stamp seen from a node whose clock runs ahead: the next one here is still later.
        let ahead = format!("{:016}:b", ms + 10_000);
        let next = stamp("a", Some(&ahead));
        assert!(*next > *ahead, "{next} after {ahead}");
        assert_eq!(stamp_ms(&next), Some(ms + 10_001));
        // Same millisecond: the node id decides, the same way on every node.
        assert!(format!("{ms:016}:b") > format!("{ms:016}:a"));
        assert_eq!(stamp_ms("garbage"), None);
    }
}
