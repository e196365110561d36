//! Pub/sub between the nodes of a cluster. [`Bus`] owns a bounded outgoing buffer (publishing
//! never waits: over its limit a record is dropped and counted), one publisher task that sends
//! it in pipelined batches, and subscriber tasks that resubscribe with backoff after Redis went
//! away and hand frames over through a bounded queue.
//!
//! # Frames
//! What the bus carries are records: byte strings that delimit themselves (`record` writes one
//! per output). The publisher joins the records of one channel that came within [`LINGER`] into
//! one frame, the node's own prefix line (given at [`Bus::start`]) then the records back to
//! back, and sends it as one `PUBLISH`: at thousands of records a second that is one Redis
//! command and one message per subscriber for many records, instead of one each (Redis's cost,
//! and each receiver's, is mostly per message). Frames stay under [`FRAME_BYTES`] (a larger record
//! goes alone).
//!
//! The transport is the small [`Transport`] interface: plain `PUBLISH`/`SUBSCRIBE` here
//! ([`RedisTransport`]); Redis Cluster's sharded `SPUBLISH`/`SSUBSCRIBE` fits behind the same
//! interface. [`channel`] names one channel per shard for it; on one Redis server, where
//! spreading buys nothing, every record goes on the first channel (so more of them share a
//! frame), see [`Transport::shards`].
//!
//! # Limits
//! - Outgoing: [`MAX_OUT_BYTES`] of records waiting for Redis; past it new records are dropped
//!   (`fleetmq_cluster_dropped_total{direction="out"}`), which happens only while Redis is slow
//!   or away. Processed state is latest-wins: the vehicle's next state supersedes a dropped one.
//! - Incoming: [`MAX_IN_BYTES`] of frames waiting for this node's outputs; past it, dropped
//!   (`direction="in"`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::ClusterError;
use super::publisher::FramePublisher;
use super::resp::RespError;
use super::subscriber::Subscription;
use crate::persist::keys;

/// Shard channels of processed outputs: `fleetmq:out:0` .. `fleetmq:out:15`.
pub const SHARDS: u16 = 16;
/// Payload bytes waiting to be published, at most.
pub const MAX_OUT_BYTES: usize = 64 * 1024 * 1024;
/// Payload bytes received and not yet taken by this node's outputs, at most.
pub const MAX_IN_BYTES: usize = 64 * 1024 * 1024;
/// Full frames sent to Redis in one pipeline, at most.
const BATCH: usize = 64;
/// How long the publisher lets records gather before it sends them (the latency it adds).
pub const LINGER: Duration = Duration::from_millis(5);
/// A frame is closed before it would grow past this many bytes.
pub const FRAME_BYTES: usize = 256 * 1024;
/// First and longest wait before resubscribing or republishing after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The channel of `vehicle`'s outputs: `fleetmq:out:{n}`, n = its key's hash slot mod
/// [`SHARDS`], so one vehicle's outputs stay in order on one channel.
pub fn channel(vehicle: &str) -> String {
    format!("fleetmq:out:{}", shard(vehicle, SHARDS))
}

/// The shard of `vehicle` among `shards` channels.
fn shard(vehicle: &str, shards: u16) -> u16 {
    keys::slot(vehicle) % shards.max(1)
}

/// Every output channel, for subscribers.
pub fn channels() -> Vec<String> {
    (0..SHARDS).map(|n| format!("fleetmq:out:{n}")).collect()
}

/// Received messages: (channel, payload). Ends when the connection is lost.
pub type Messages = BoxStream<'static, (String, Bytes)>;

/// How messages move between nodes.
pub trait Transport: Send + Sync + 'static {
    /// How many of the [`channels`] publishers spread records over: all [`SHARDS`] where
    /// they land on different servers, 1 where one server takes them all.
    fn shards(&self) -> u16 {
        SHARDS
    }
    /// Publishes each (channel, payload), in order.
    fn publish(&self, batch: Vec<(String, Bytes)>) -> BoxFuture<'_, redis::RedisResult<()>>;
    /// A round trip on the publishing connection (to notice Redis is back while idle).
    fn ping(&self) -> BoxFuture<'_, redis::RedisResult<()>>;
    /// Subscribes to `channels` on a connection of its own.
    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, redis::RedisResult<Messages>>;
}

/// Plain Redis pub/sub on connections of our own ([`super::resp`]): `PUBLISH` on one
/// ([`super::publisher`]), `SUBSCRIBE` on one per subscriber ([`super::subscriber`]).
pub struct RedisTransport {
    info: redis::ConnectionInfo,
    publisher: FramePublisher,
}

impl RedisTransport {
    /// Connects lazily.
    ///
    /// # Errors
    /// [`ClusterError::Url`] for a URL the client cannot use.
    pub fn new(url: &str) -> Result<RedisTransport, ClusterError> {
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(ClusterError::Url)?;
        Ok(RedisTransport {
            publisher: FramePublisher::new(info.clone()),
            info,
        })
    }
}

fn redis_error(e: &RespError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "cluster bus", e.to_string()))
}

impl Transport for RedisTransport {
    /// One server: one channel, so that a frame carries as many records as possible.
    fn shards(&self) -> u16 {
        1
    }

    fn publish(&self, batch: Vec<(String, Bytes)>) -> BoxFuture<'_, redis::RedisResult<()>> {
        Box::pin(async move {
            self.publisher
                .publish(&batch)
                .await
                .map_err(|e| redis_error(&e))
        })
    }

    fn ping(&self) -> BoxFuture<'_, redis::RedisResult<()>> {
        Box::pin(async move { self.publisher.ping().await.map_err(|e| redis_error(&e)) })
    }

    /// On a connection read by [`Subscription`] (not redis-rs's decoder: see there why).
    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, redis::RedisResult<Messages>> {
        Box::pin(async move {
            let sub = Subscription::open(&self.info, &channels)
                .await
                .map_err(|e| redis_error(&e))?;
            let messages = futures_util::stream::unfold(sub, |mut sub| async move {
                match sub.next().await {
                    Ok(Some((channel, payload))) => {
                        let channel = String::from_utf8_lossy(&channel).into_owned();
                        Some(((channel, payload), sub))
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster bus: subscription ended");
                        None
                    }
                }
            });
            Ok(messages.boxed())
        })
    }
}

/// Counters of the bus.
#[derive(Default)]
struct Stats {
    /// The last publish reached Redis.
    publishing: AtomicBool,
    /// Subscribers currently subscribed.
    subscribed: AtomicUsize,
    published: AtomicU64,
    received: AtomicU64,
    dropped_out: AtomicU64,
    dropped_in: AtomicU64,
    reconnects: AtomicU64,
}

/// The outgoing buffer, bounded in bytes.
#[derive(Default)]
struct Outbox {
    pending: Mutex<Pending>,
    ready: Notify,
}

/// Records waiting for the publisher, as frames.
#[derive(Default)]
struct Pending {
    /// The frame being filled per shard: its bytes and record count.
    open: Vec<Option<(BytesMut, u64)>>,
    /// Closed frames (shard, frame, records), oldest first; a shard's closed frames go before
    /// its open one.
    full: VecDeque<(u16, Bytes, u64)>,
    /// Frame bytes in both.
    bytes: usize,
    /// When the oldest record waiting came.
    since: Option<tokio::time::Instant>,
}

impl Pending {
    /// Up to [`BATCH`] closed frames, or when there are none every open frame, as
    /// (channel, frame) and the records they hold.
    fn take(&mut self) -> (Vec<(String, Bytes)>, u64) {
        let mut frames = Vec::new();
        let mut records = 0;
        let mut push = |shard: u16, frame: Bytes, n: u64| {
            frames.push((format!("fleetmq:out:{shard}"), frame));
            records += n;
        };
        if self.full.is_empty() {
            for (shard, open) in self.open.iter_mut().enumerate() {
                if let Some((frame, n)) = open.take() {
                    push(shard as u16, frame.freeze(), n);
                }
            }
        } else {
            let n = self.full.len().min(BATCH);
            for (shard, frame, count) in self.full.drain(..n) {
                push(shard, frame, count);
            }
        }
        (frames, records)
    }
}

/// Pub/sub between nodes.
pub struct Bus {
    transport: Arc<dyn Transport>,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    /// The first line of every frame this node sends, newline included.
    prefix: Bytes,
    shards: u16,
}

impl Bus {
    /// Starts the publisher task; it stops with `stop`. Every frame starts with `prefix` (a
    /// line: it must end with `\n`).
    pub fn start(transport: Arc<dyn Transport>, prefix: Bytes, stop: CancellationToken) -> Bus {
        let shards = transport.shards().clamp(1, SHARDS);
        let bus = Bus {
            transport,
            outbox: Arc::new(Outbox {
                pending: Mutex::new(Pending {
                    open: vec![None; usize::from(shards)],
                    ..Pending::default()
                }),
                ready: Notify::new(),
            }),
            stats: Arc::default(),
            stop,
            prefix,
            shards,
        };
        bus.stats.publishing.store(true, Relaxed);
        tokio::spawn(publish_loop(
            bus.transport.clone(),
            bus.outbox.clone(),
            bus.stats.clone(),
            bus.stop.clone(),
        ));
        bus
    }

    /// Queues `record` (which must delimit itself: the bus adds nothing) on `vehicle`'s
    /// channel; never waits. Dropped (and counted) past [`MAX_OUT_BYTES`].
    pub fn publish(&self, vehicle: &str, record: &[u8]) {
        let shard = shard(vehicle, self.shards);
        let len = record.len();
        {
            let mut guard = self
                .outbox
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let p = &mut *guard;
            if p.bytes + len > MAX_OUT_BYTES {
                drop(guard);
                self.stats.dropped_out.fetch_add(1, Relaxed);
                return;
            }
            let open = &mut p.open[usize::from(shard)];
            let closed = match open {
                Some((frame, n)) if frame.len() + len > FRAME_BYTES => {
                    let n = *n;
                    open.take().map(|(frame, _)| (frame.freeze(), n))
                }
                _ => None,
            };
            let (frame, n) = open.get_or_insert_with(|| (BytesMut::new(), 0));
            let before = frame.len();
            if before == 0 {
                frame.reserve(4096.max(self.prefix.len() + len));
                frame.extend_from_slice(&self.prefix);
            }
            frame.extend_from_slice(record);
            *n += 1;
            // Frame bytes, prefixes included.
            p.bytes += frame.len() - before;
            if p.since.is_none() {
                p.since = Some(tokio::time::Instant::now());
            }
            if let Some((frame, n)) = closed {
                p.full.push_back((shard, frame, n));
            }
        }
        self.outbox.ready.notify_one();
    }

    /// Subscribes to `channels` (again after every lost connection, with backoff); messages come
    /// out of the returned receiver, at most [`MAX_IN_BYTES`] of them waiting.
    pub fn subscribe(&self, channels: Vec<String>) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(AtomicUsize::new(0));
        tokio::spawn(subscribe_loop(
            self.transport.clone(),
            channels,
            tx,
            budget.clone(),
            self.stats.clone(),
            self.stop.clone(),
        ));
        Inbox { rx, budget }
    }

    /// Whether messages flow both ways: the last publish worked and a subscriber is on.
    pub fn is_up(&self) -> bool {
        self.stats.publishing.load(Relaxed) && self.stats.subscribed.load(Relaxed) > 0
    }

    /// `fleetmq_cluster_bus_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        let _ = write!(
            out,
            "# HELP fleetmq_cluster_bus_up 1 while the cluster bus publishes and is subscribed in Redis.\n\
             # TYPE fleetmq_cluster_bus_up gauge\nfleetmq_cluster_bus_up {}\n\
             # HELP fleetmq_cluster_messages_total Redis messages of processed outputs sent to and received from other nodes (each carries the outputs of up to 5 ms).\n\
             # TYPE fleetmq_cluster_messages_total counter\n\
             fleetmq_cluster_messages_total{{direction=\"out\"}} {}\n\
             fleetmq_cluster_messages_total{{direction=\"in\"}} {}\n\
             # HELP fleetmq_cluster_dropped_total Dropped at a full cluster queue or a failed publish: outputs going out, Redis messages (up to 5 ms of outputs each) coming in.\n\
             # TYPE fleetmq_cluster_dropped_total counter\n\
             fleetmq_cluster_dropped_total{{direction=\"out\"}} {}\n\
             fleetmq_cluster_dropped_total{{direction=\"in\"}} {}\n\
             # HELP fleetmq_cluster_bus_reconnects_total Times the cluster bus subscribed again after losing Redis.\n\
             # TYPE fleetmq_cluster_bus_reconnects_total counter\nfleetmq_cluster_bus_reconnects_total {}\n",
            u8::from(self.is_up()),
            s.published.load(Relaxed),
            s.received.load(Relaxed),
            s.dropped_out.load(Relaxed),
            s.dropped_in.load(Relaxed),
            s.reconnects.load(Relaxed),
        );
    }
}

/// The receiving end of [`Bus::subscribe`], bounded in bytes by the sender.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<(String, Bytes)>,
    budget: Arc<AtomicUsize>,
}

impl Inbox {
    /// The next message; `None` once the bus stopped.
    pub async fn recv(&mut self) -> Option<(String, Bytes)> {
        let m = self.rx.recv().await?;
        self.budget.fetch_sub(m.1.len(), Relaxed);
        Some(m)
    }
}

async fn publish_loop(
    transport: Arc<dyn Transport>,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        // The oldest record waits at most LINGER (plus a round trip in flight) for others to
        // join its frame; closed frames go at once.
        let due = {
            let p = outbox.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.since {
                Some(since) if p.full.is_empty() => Some(since + LINGER),
                Some(_) => Some(tokio::time::Instant::now()),
                None => None,
            }
        };
        if let Some(due) = due {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = stop.cancelled() => return,
            }
        }
        let (batch, n) = {
            let mut p = outbox.pending.lock().unwrap_or_else(|e| e.into_inner());
            let (batch, n) = p.take();
            let taken: usize = batch.iter().map(|(_, f)| f.len()).sum();
            p.bytes = p.bytes.saturating_sub(taken);
            if p.bytes == 0 {
                p.since = None;
            }
            (batch, n)
        };
        if batch.is_empty() {
            // While down and idle, probe Redis so that readiness comes back without traffic.
            let idle = if stats.publishing.load(Relaxed) {
                Duration::MAX
            } else {
                backoff
            };
            tokio::select! {
                () = outbox.ready.notified() => continue,
                () = tokio::time::sleep(idle) => {}
                () = stop.cancelled() => return,
            }
            match transport.ping().await {
                Ok(()) => {
                    stats.publishing.store(true, Relaxed);
                    backoff = BACKOFF_MIN;
                }
                Err(_) => backoff = (backoff * 2).min(BACKOFF_MAX),
            }
            continue;
        }
        let frames = batch.len() as u64;
        match transport.publish(batch).await {
            Ok(()) => {
                stats.published.fetch_add(frames, Relaxed);
                if !stats.publishing.swap(true, Relaxed) {
                    tracing::info!("cluster bus: publishing to redis again");
                }
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                // Lost with the batch: the next state of each vehicle supersedes it.
                stats.dropped_out.fetch_add(n, Relaxed);
                if stats.publishing.swap(false, Relaxed) {
                    tracing::warn!(error = %e, "cluster bus: publish failed; serving local clients, retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn subscribe_loop(
    transport: Arc<dyn Transport>,
    channels: Vec<String>,
    tx: mpsc::UnboundedSender<(String, Bytes)>,
    budget: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    loop {
        let subscribed = tokio::select! {
            r = transport.subscribe(channels.clone()) => r,
            () = stop.cancelled() => return,
        };
        match subscribed {
            Ok(mut messages) => {
                if !first {
                    stats.reconnects.fetch_add(1, Relaxed);
                    tracing::info!("cluster bus: subscribed again");
                }
                first = false;
                backoff = BACKOFF_MIN;
                stats.subscribed.fetch_add(1, Relaxed);
                loop {
                    let next = tokio::select! {
                        m = messages.next() => m,
                        () = stop.cancelled() => {
                            stats.subscribed.fetch_sub(1, Relaxed);
                            return;
                        }
                    };
                    let Some((channel, payload)) = next else {
                        break;
                    };
                    stats.received.fetch_add(1, Relaxed);
                    let len = payload.len();
                    if budget.fetch_add(len, Relaxed) + len > MAX_IN_BYTES {
                        budget.fetch_sub(len, Relaxed);
                        stats.dropped_in.fetch_add(1, Relaxed);
                        continue;
                    }
                    if tx.send((channel, payload)).is_err() {
                        stats.subscribed.fetch_sub(1, Relaxed);
                        return;
                    }
                }
                stats.subscribed.fetch_sub(1, Relaxed);
                tracing::warn!(
                    "cluster bus: lost the redis subscription; serving local clients, resubscribing"
                );
            }
            Err(e) => tracing::debug!(error = %e, "cluster bus: subscribe failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis that accepts the connection and never answers.
    struct Stuck;

    impl Transport for Stuck {
        fn publish(&self, _: Vec<(String, Bytes)>) -> BoxFuture<'_, redis::RedisResult<()>> {
            Box::pin(std::future::pending())
        }
        fn ping(&self) -> BoxFuture<'_, redis::RedisResult<()>> {
            Box::pin(std::future::pending())
        }
        fn subscribe(&self, _: Vec<String>) -> BoxFuture<'_, redis::RedisResult<Messages>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_stuck_redis_costs_at_most_the_outgoing_limit() {
        let stop = CancellationToken::new();
        let bus = Bus::start(Arc::new(Stuck), Bytes::from_static(b"n\n"), stop.clone());
        let mib = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..(MAX_OUT_BYTES / mib.len() + BATCH + 10) {
            bus.publish("v", &mib);
            tokio::task::yield_now().await;
        }
        let queued = bus.outbox.pending.lock().expect("lock").bytes;
        assert!(queued <= MAX_OUT_BYTES, "{queued}");
        assert!(bus.stats.dropped_out.load(Relaxed) >= 10);
        assert!(!bus.is_up(), "never subscribed");
        stop.cancel();
    }

    #[test]
    fn one_vehicle_one_channel_among_the_shards() {
        assert_eq!(channel("bus-1"), channel("bus-1"));
        let all = channels();
        assert_eq!(all.len(), usize::from(SHARDS));
        for v in ["a", "bus-1", "bus-2", "x/y"] {
            assert!(all.contains(&channel(v)), "{v}");
        }
        assert_eq!(all[0], "fleetmq:out:0");
    }
}
