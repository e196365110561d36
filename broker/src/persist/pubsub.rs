//! Pub/sub between fleetmq nodes over Redis, the transport of the cluster bus: plain
//! `PUBLISH`/`SUBSCRIBE` on one Redis node, sharded `SPUBLISH`/`SSUBSCRIBE` on a Redis Cluster
//! (where plain `PUBLISH` would be broadcast to every shard).
//!
//! - [`Publisher::publish`] never blocks: it puts the message on a bounded queue
//!   ([`PUBLISH_QUEUE`]) that one task sends on, in pipelines (one per hash slot of the channel
//!   on a cluster). A full queue, or Redis down, drops the message and counts it.
//! - [`PubSub::subscribe`] gives a bounded receiver ([`RECEIVE_QUEUE`]) of `(channel, payload)`;
//!   a message arriving when it is full is dropped and counted. A task owns the subscribing
//!   connection (RESP3 pushes): it subscribes with one call per hash slot on a cluster (a call
//!   must stay within one slot), and subscribes again after a reconnect (Redis restarted), when
//!   the server ends a subscription (its slot moved to another node) and every
//!   [`RESUBSCRIBE_EVERY`] as a safety net (subscribing again to a channel is a no-op for Redis).
//!   The task ends when the receiver is dropped.
//!
//! Redis pub/sub is fire-and-forget: a subscriber that is away misses what was published
//! meanwhile. The bus carries state that the next update supersedes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{AsyncPushSender, ConnectionManager, SendError};
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{Notify, mpsc};

use super::PersistError;
use super::conn::{self, Conn, Target};
use super::keys;
use super::renewing::Renewing;
use super::writer::{MAX_BACKOFF, MIN_BACKOFF};

/// Messages waiting to be published, all publishers of one [`PubSub`] together.
pub const PUBLISH_QUEUE: usize = 10_000;
/// Messages a subscriber's receiver holds before new ones are dropped.
pub const RECEIVE_QUEUE: usize = 10_000;
/// Messages sent per round of the publishing task.
const PUBLISH_BATCH: usize = 512;
/// How often a subscriber checks its connection (a `PING` also makes a connection that lost
/// Redis reconnect).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Subscribing again though nothing seemed wrong, in case a change went unnoticed.
pub const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(30);

/// Counters of one [`PubSub`], rendered by [`PubSub::render_metrics`].
#[derive(Debug, Default)]
struct Stats {
    published: AtomicU64,
    publish_dropped: AtomicU64,
    received: AtomicU64,
    receive_dropped: AtomicU64,
}

/// Pub/sub on the Redis of `--redis` or `--redis-cluster`; cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    target: Target,
    publisher: Publisher,
}

/// The sending side: clone it freely, [`Publisher::publish`] never waits.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<(String, Bytes)>,
    stats: Arc<Stats>,
}

impl Publisher {
    /// Queues `payload` for `channel`; dropped (and counted) when the queue is full.
    pub fn publish(&self, channel: &str, payload: Bytes) {
        if self.tx.try_send((channel.to_owned(), payload)).is_err() {
            self.stats.publish_dropped.fetch_add(1, Relaxed);
        }
    }
}

impl PubSub {
    /// Pub/sub on `target`; starts the publishing task (on the current tokio runtime). Connects
    /// lazily: Redis being down now is not an error.
    ///
    /// # Errors
    /// [`PersistError::Url`] when a URL is not a Redis URL.
    pub fn open(target: &Target) -> Result<PubSub, PersistError> {
        let conn = Conn::open(target).map_err(|source| PersistError::Url {
            target: target.describe(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let stats = Arc::new(Stats::default());
        tokio::spawn(publish_task(conn, rx, stats.clone()));
        Ok(PubSub {
            target: target.clone(),
            publisher: Publisher { tx, stats },
        })
    }

    /// A handle to publish with.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Subscribes to `channels` on a connection of its own, kept subscribed until the receiver
    /// is dropped. Returns at once: the first subscription is made in the background (Redis may
    /// be down now).
    ///
    /// # Errors
    /// [`PersistError::Url`] when a URL is not a Redis URL.
    pub fn subscribe(
        &self,
        channels: Vec<String>,
    ) -> Result<mpsc::Receiver<(String, Bytes)>, PersistError> {
        let (tx, rx) = mpsc::channel(RECEIVE_QUEUE);
        let wake = Arc::new(Notify::new());
        let sink = Sink {
            tx: tx.clone(),
            stats: self.publisher.stats.clone(),
            wake: wake.clone(),
        };
        let conn = SubConn::open(&self.target, sink).map_err(|source| PersistError::Url {
            target: self.target.describe(),
            source,
        })?;
        tokio::spawn(subscribe_task(conn, channels, tx, wake));
        Ok(rx)
    }

    /// Appends the `fleetmq_redis_pubsub_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.publisher.stats;
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "fleetmq_redis_pubsub_published_total",
            "messages published to Redis pub/sub",
            s.published.load(Relaxed),
        );
        counter(
            "fleetmq_redis_pubsub_publish_dropped_total",
            "messages not published: queue full or Redis down",
            s.publish_dropped.load(Relaxed),
        );
        counter(
            "fleetmq_redis_pubsub_received_total",
            "messages received from Redis pub/sub",
            s.received.load(Relaxed),
        );
        counter(
            "fleetmq_redis_pubsub_receive_dropped_total",
            "messages received while the subscriber's queue was full, dropped",
            s.receive_dropped.load(Relaxed),
        );
    }
}

/// Sends queued messages in pipelines until every [`Publisher`] is gone.
async fn publish_task(conn: Conn, mut rx: mpsc::Receiver<(String, Bytes)>, stats: Arc<Stats>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut backoff = MIN_BACKOFF;
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let sent = batch.len() as u64;
        let pipes = by_slot(conn.cluster(), std::mem::take(&mut batch))
            .into_values()
            .map(|messages| {
                let mut pipe = redis::pipe();
                let command = if conn.cluster() {
                    "SPUBLISH"
                } else {
                    "PUBLISH"
                };
                for (channel, payload) in messages {
                    pipe.cmd(command)
                        .arg(channel)
                        .arg(payload.as_ref())
                        .ignore();
                }
                pipe
            })
            .collect();
        match conn::query_all::<()>(&conn, pipes).await {
            Ok(_) => {
                stats.published.fetch_add(sent, Relaxed);
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                // Fire-and-forget: the next update supersedes these; meanwhile the queue fills
                // and drops, counted, rather than send into a dead connection in a hot loop.
                tracing::debug!(error = %e, dropped = sent, "redis pub/sub: publish failed");
                stats.publish_dropped.fetch_add(sent, Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// `items` grouped by the hash slot of their channel on a cluster, else in one group.
fn by_slot<T>(cluster: bool, items: Vec<(String, T)>) -> BTreeMap<u16, Vec<(String, T)>> {
    let mut groups: BTreeMap<u16, Vec<(String, T)>> = BTreeMap::new();
    for item in items {
        let slot = if cluster { keys::slot(&item.0) } else { 0 };
        groups.entry(slot).or_default().push(item);
    }
    groups
}

/// Where a subscribing connection delivers Redis's pushes: messages into the bounded
/// receiver, and a wake-up of the subscriber task when a subscription may have been lost.
struct Sink {
    tx: mpsc::Sender<(String, Bytes)>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
}

impl AsyncPushSender for Sink {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    return Ok(());
                };
                let channel = String::from_utf8_lossy(&channel).into_owned();
                self.stats.received.fetch_add(1, Relaxed);
                match self.tx.try_send((channel, Bytes::from(payload))) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.stats.receive_dropped.fetch_add(1, Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(SendError),
                }
            }
            // We never unsubscribe: the server ended a subscription (its slot moved), or the
            // connection dropped.
            PushKind::SUnsubscribe | PushKind::Unsubscribe | PushKind::Disconnection => {
                self.wake.notify_one();
            }
            _ => {}
        }
        Ok(())
    }
}

/// A connection that receives pushes (RESP3) into a [`Sink`].
enum SubConn {
    /// Reconnects by itself and subscribes again to what it had.
    Single(ConnectionManager),
    /// Keeps a connection per node, follows slot moves and resubscribes after reconnects;
    /// replaced when it stops answering (then [`subscribe_task`] subscribes again).
    Cluster(Renewing),
}

impl SubConn {
    fn open(target: &Target, sink: Sink) -> RedisResult<SubConn> {
        match target {
            Target::Single(url) => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
                let redis_info = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(redis_info))?;
                let config = conn::manager_config()
                    .set_push_sender(sink)
                    .set_automatic_resubscription();
                Ok(SubConn::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            Target::Cluster(seeds) => {
                let client = conn::cluster_builder(seeds)?
                    .use_protocol(ProtocolVersion::RESP3)
                    .build()?;
                let config = conn::cluster_config().set_push_sender(sink);
                Ok(SubConn::Cluster(Renewing::new(
                    client,
                    config,
                    conn::REQUEST_DEADLINE,
                )))
            }
        }
    }

    /// Subscribes to every channel: one call on a single node, one per hash slot on a cluster.
    async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        let groups = by_slot(
            matches!(self, SubConn::Cluster(_)),
            channels.iter().map(|c| (c.clone(), ())).collect(),
        );
        for group in groups.into_values() {
            let names: Vec<String> = group.into_iter().map(|(c, ())| c).collect();
            match self {
                SubConn::Single(c) => c.subscribe(&names).await?,
                SubConn::Cluster(c) => {
                    c.run(|mut c| async move { c.ssubscribe(&names).await })
                        .await?
                }
            }
        }
        Ok(())
    }

    async fn ping(&mut self) -> bool {
        let reply = match self {
            SubConn::Single(c) => redis::cmd("PING").query_async::<Value>(c).await,
            SubConn::Cluster(c) => {
                c.run(|mut c| async move { redis::cmd("PING").query_async::<Value>(&mut c).await })
                    .await
            }
        };
        reply.is_ok()
    }
}

/// Keeps `conn` subscribed to `channels` until the receiver of `tx` is dropped.
async fn subscribe_task(
    mut conn: SubConn,
    channels: Vec<String>,
    tx: mpsc::Sender<(String, Bytes)>,
    wake: Arc<Notify>,
) {
    let mut subscribed = false;
    let mut since = tokio::time::Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !subscribed || since.elapsed() >= RESUBSCRIBE_EVERY {
            match conn.subscribe(&channels).await {
                Ok(()) => {
                    if !subscribed {
                        tracing::debug!(channels = channels.len(), "redis pub/sub: subscribed");
                    }
                    subscribed = true;
                    since = tokio::time::Instant::now();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis pub/sub: subscribe failed; retrying");
                    subscribed = false;
                }
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = wake.notified() => subscribed = false,
            _ = check.tick() => {
                // A failed PING makes the connection reconnect; subscribe again once it answers.
                if !conn.ping().await {
                    subscribed = false;
                }
            }
        }
    }
}
