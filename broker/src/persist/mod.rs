//! Redis persistence (docs/redis.md): write-behind snapshots of every vehicle's processed state and
//! tracker, restore on start, the processed track for `/track`, and the SOS log.
//!
//! [`Store`] is the handle the server holds. Processed state reaches it through [`RedisSink`]
//! (a [`StateSink`]) that only fills a bounded buffer; its own tasks talk to Redis. Redis being
//! down never stops the broker: state waits in bounded memory and is written once Redis is back.
//!
//! # Layout
//! - `conn`: the connection, to one Redis node or to a Redis Cluster (`--redis-cluster`).
//! - `keys`: key names, the key scheme and hash slots (read this for the cluster layout).
//! - `pubsub`: pub/sub between fleetmq nodes, plain or sharded (for the cluster bus).
//! - `pending`: the bounded latest-wins buffer between ingest and the writer.
//! - `writer`: the write-behind task (pipelined batches every 100 ms, reconnect with backoff).
//! - `expiry`: which vehicle hashes get their TTL extended with their next write.
//! - `restore`: reading every vehicle back on start.
//! - `sos`: the SOS log, persisted before anyone is notified.
//! - `stats`: `fleetmq_redis_*` metrics.
//! - `fence`: fenced writes of the vehicle hash under a cluster lease (docs/redis.md#leases).

pub(crate) mod conn;
mod expiry;
pub mod fence;
pub mod keys;
mod pending;
pub mod pubsub;
#[cfg(test)]
mod pubsub_tests;
mod renewing;
mod restore;
mod sos;
mod stats;
#[cfg(test)]
pub(crate) mod test_redis;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geo_engine::{Event, Tracker, VehicleState};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Ingest, StateSink, now_ms};
use crate::router::RouterMsg;
use crate::{Config, Error};
pub use conn::{Conn, Target};
use pending::{Pending, StateJson};
pub use restore::{Restored, rebuild};
pub use sos::SOS_QUEUE;
use sos::{SOS_WAIT, SosQueue, SosRecord};
use stats::Stats;

/// Vehicles the write-behind buffer holds at most (one entry each, latest wins).
pub const MAX_PENDING_VEHICLES: usize = 1_000_000;
/// Track points the write-behind buffer holds at most, all vehicles together.
pub const MAX_PENDING_TRACK_POINTS: usize = 500_000;
/// Longest wait of [`Store::written`] (a QoS 1 location's PUBACK with `--cluster`).
pub const WRITE_WAIT: Duration = Duration::from_secs(2);
/// Entries `/track` returns at most (the newest ones).
const TRACK_READ_MAX: usize = 10_000;

/// One stream entry as XRANGE returns it: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// `--redis` / `--redis-cluster` is not a usable URL.
    #[error("invalid {target}: {source} (give redis://HOST:PORT)")]
    Url {
        target: String,
        #[source]
        source: redis::RedisError,
    },
    /// A Redis round trip failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What the tasks and the handles share.
pub(crate) struct Shared {
    /// Multiplexed and reconnecting; clones share one connection.
    conn: Conn,
    pending: Pending,
    sos: SosQueue,
    stats: Stats,
    /// `PEXPIRE` of each vehicle hash, milliseconds.
    ttl_ms: u64,
    /// Cancelled by [`Store::close`].
    stop: CancellationToken,
    /// With `--cluster`: the leases the vehicle hash writes are fenced with; set once at start.
    fence: std::sync::OnceLock<Arc<dyn fence::Fence>>,
    /// The number of the last batch the writer finished (written, or nothing to write).
    written: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// Records Redis's health, logging transitions once.
    fn mark_up(&self, up: bool) {
        let was = self.stats.up.swap(up, Relaxed);
        match (was, up) {
            (false, true) => tracing::info!(pending = self.pending.len(), "redis is up"),
            (true, false) => {
                tracing::warn!(
                    "redis is down: serving on, keeping the latest state per vehicle in memory"
                );
                // Wake `Store::written` waiters: nothing is written soon.
                self.written.send_modify(|_| {});
            }
            _ => {}
        }
    }
}

/// The Redis store: cheap to share behind an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    /// The writer and SOS tasks, joined by [`Store::close`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Store {
    /// A store on `target` whose vehicle hashes expire after `ttl`. Connects lazily: Redis
    /// being down now is not an error.
    ///
    /// # Errors
    /// [`PersistError::Url`] when a URL is not a Redis URL.
    pub fn open(target: &Target, ttl: Duration) -> Result<Store, PersistError> {
        let conn = Conn::open(target).map_err(|source| PersistError::Url {
            target: target.describe(),
            source,
        })?;
        let shared = Shared {
            conn,
            pending: Pending::new(MAX_PENDING_VEHICLES, MAX_PENDING_TRACK_POINTS),
            sos: SosQueue::default(),
            stats: Stats::default(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            stop: CancellationToken::new(),
            fence: std::sync::OnceLock::new(),
            written: tokio::sync::watch::Sender::new(0),
        };
        Ok(Store {
            shared: Arc::new(shared),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Reads every vehicle's tracker back (call before accepting connections).
    ///
    /// # Errors
    /// Redis is down or went away during the restore.
    pub async fn restore(&self) -> Result<Restored, PersistError> {
        let mut conn = self.shared.conn.clone();
        match restore::load(&mut conn, MAX_PENDING_VEHICLES, now_ms()).await {
            Ok(r) => {
                self.shared.mark_up(true);
                Ok(r)
            }
            Err(e) => {
                self.shared.mark_up(false);
                Err(e.into())
            }
        }
    }

    /// The sink to give ingest: it buffers and never blocks.
    pub fn sink(&self) -> Arc<dyn StateSink> {
        Arc::new(RedisSink(self.shared.clone()))
    }

    /// Starts the writer and SOS tasks (on the current tokio runtime).
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.is_empty() {
            tasks.push(tokio::spawn(writer::run(self.shared.clone())));
            tasks.push(tokio::spawn(sos::run(self.shared.clone())));
        }
    }

    /// Starts the SOS task now, and a task that restores from Redis as soon as it answers
    /// (retrying with the writer's backoff), puts back the vehicles `ingest` has not seen
    /// since start, then runs the writer. Stopped by [`Store::close`] at any point: the
    /// writer's final flush still runs.
    fn start_after_restore(
        &self,
        ingest: Arc<Ingest>,
        router: tokio::sync::mpsc::Sender<RouterMsg>,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if !tasks.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        tasks.push(tokio::spawn(async move {
            late_restore(&shared, &ingest, &router).await;
            writer::run(shared).await;
        }));
        tasks.push(tokio::spawn(sos::run(self.shared.clone())));
    }

    /// Stops the tasks after a final flush of everything buffered (bounded in time).
    pub async fn close(&self) {
        self.shared.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Fences every vehicle hash write with `fence`'s leases (`--cluster`): a vehicle it does
    /// not hold is not written, one it holds only under the epoch it holds it with.
    pub fn set_fence(&self, fence: Arc<dyn fence::Fence>) {
        let _ = self.shared.fence.set(fence);
    }

    /// A connection of its own to the same Redis (multiplexed; clones share it).
    pub fn connection(&self) -> Conn {
        self.shared.conn.clone()
    }

    /// A mark for what was buffered so far, to wait on with [`Store::written`]; `None` while
    /// Redis is down (nothing would be written soon: do not wait).
    pub fn mark(&self) -> Option<u64> {
        self.is_up().then(|| self.shared.pending.mark())
    }

    /// Resolves once the batch of `mark` is written, or after [`WRITE_WAIT`], or at once when
    /// Redis goes down meanwhile.
    pub async fn written(&self, mark: u64) {
        let mut rx = self.shared.written.subscribe();
        let shared = &self.shared;
        let _ = tokio::time::timeout(
            WRITE_WAIT,
            rx.wait_for(|n| *n >= mark || !shared.stats.up.load(Relaxed)),
        )
        .await;
    }

    /// Vehicles and SOS messages waiting to be written.
    pub fn pending(&self) -> usize {
        self.shared.pending.len() + self.shared.sos.len()
    }

    /// Whether the last round trip to Redis succeeded.
    pub fn is_up(&self) -> bool {
        self.shared.stats.up.load(Relaxed)
    }

    /// Queues the SOS `record` (already in the local log when `logged`) for Redis. Waits for
    /// Redis while it is up, or when the local log failed: resolves `true` once Redis has it,
    /// `false` after [`SOS_WAIT`] or at once when Redis is down and the log has it (the SOS
    /// stays queued and is written when Redis is back).
    pub async fn sos(&self, record: &crate::sos_log::LoggedSos, logged: bool) -> bool {
        let (done, acked) = oneshot::channel();
        self.shared.sos.push(SosRecord {
            id: record.id.clone(),
            vehicle: record.vehicle.clone(),
            ts: record.ts,
            payload: record.bytes(),
            done: Some(done),
        });
        let persisted = if logged && !self.is_up() {
            false
        } else {
            matches!(tokio::time::timeout(SOS_WAIT, acked).await, Ok(Ok(())))
        };
        if !persisted {
            self.shared.stats.sos_unpersisted.fetch_add(1, Relaxed);
            tracing::warn!(
                vehicle = %record.vehicle,
                logged,
                "SOS not acknowledged by Redis (down, or 2 s passed): delivering it anyway, will write it when Redis is back"
            );
        }
        persisted
    }

    /// Queues SOS messages read back from the local log; Redis keeps the ones it has not got.
    pub fn replay_sos(&self, records: Vec<crate::sos_log::LoggedSos>) {
        for record in records {
            self.shared.sos.push(SosRecord {
                payload: record.bytes(),
                id: record.id,
                vehicle: record.vehicle,
                ts: record.ts,
                done: None,
            });
        }
    }

    /// The tracker stored for `vehicle` (its processing node's, as of that node's last write
    /// round), rebuilt as a restore would (`now_ms` marks a vehicle whose last state is offline
    /// offline again); `None` when none is stored or it does not read. The future owns what
    /// it needs.
    ///
    /// # Errors
    /// Redis is down or refused the read.
    pub fn tracker(
        &self,
        vehicle: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Tracker>, PersistError>> + Send + 'static {
        let mut conn = self.shared.conn.clone();
        let key = keys::vehicle(vehicle);
        async move {
            let (tracker, state): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
                .arg(&key)
                .arg(keys::FIELD_TRACKER)
                .arg(keys::FIELD_STATE)
                .query_async(&mut conn)
                .await?;
            Ok(rebuild(&key, tracker.as_deref(), state.as_deref(), now_ms))
        }
    }

    /// The processed track of `vehicle` with `from_ms <= ts <= to_ms`, oldest first, at most the
    /// newest [`TRACK_READ_MAX`] entries. The future owns what it needs.
    ///
    /// # Errors
    /// Redis is down or refused the read.
    pub fn track(
        &self,
        vehicle: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, PersistError>> + Send + 'static {
        let mut conn = self.shared.conn.clone();
        let key = keys::track(vehicle);
        async move {
            let entries: Vec<StreamEntry> = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg(to_ms.max(0))
                .arg(from_ms.max(0))
                .arg("COUNT")
                .arg(TRACK_READ_MAX)
                .query_async(&mut conn)
                .await?;
            let mut fixes: Vec<serde_json::Value> = entries
                .into_iter()
                .filter_map(|(_, fields)| {
                    let (_, json) = fields.into_iter().find(|(f, _)| f == keys::FIELD_STATE)?;
                    serde_json::from_slice(&json).ok()
                })
                .collect();
            fixes.reverse();
            Ok(fixes)
        }
    }

    /// Appends the `fleetmq_redis_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let pending = self.shared.pending.len() + self.shared.sos.len();
        self.shared
            .stats
            .render(out, pending, self.shared.pending.dropped.load(Relaxed));
    }
}

/// The store as the server starts it: opened and restored in `Broker::bind`, replayed into
/// ingest and the router in `Broker::run` before any listener accepts.
pub struct Startup {
    store: Arc<Store>,
    /// Trackers read back from Redis, not yet handed to ingest.
    restored: Vec<Tracker>,
    /// Redis was unreachable at start: restore once it is back, before writing anything.
    deferred: bool,
}

impl Startup {
    /// Opens `--redis` or `--redis-cluster` (if set) and reads every vehicle back. Redis being down is not an error:
    /// the broker serves without restored state and writes once Redis is back.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL.
    pub async fn open(config: &Config) -> Result<Option<Startup>, Error> {
        let Some(target) = Target::from_config(config) else {
            return Ok(None);
        };
        let store =
            Store::open(&target, config.state_ttl).map_err(|e| Error::Config(e.to_string()))?;
        let started = std::time::Instant::now();
        let mut deferred = false;
        let restored = match store.restore().await {
            Ok(r) => {
                tracing::info!(
                    vehicles = r.trackers.len(),
                    skipped = r.skipped,
                    seconds = started.elapsed().as_secs_f64(),
                    "redis: state restored"
                );
                r.trackers
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable at start: serving without restored state; restoring once it is back");
                deferred = true;
                Vec::new()
            }
        };
        Ok(Some(Startup {
            store: Arc::new(store),
            restored,
            deferred,
        }))
    }

    /// The store handle (for the connection context and the HTTP side).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Puts the restored trackers into `ingest` (which feeds the bridge's hub), routes their
    /// retained `vehicles/{id}`, then starts the writer. Call before accepting connections.
    ///
    /// When Redis was down at start, the broker serves at once and a background task restores
    /// once Redis answers: every vehicle not seen since start comes back (tracker, retained
    /// state), vehicles seen since keep what this broker computed, and only then does the
    /// writer write, so state in Redis is never overwritten by a broker that has not read it.
    pub async fn replay(
        self,
        ingest: &Arc<Ingest>,
        router: &tokio::sync::mpsc::Sender<RouterMsg>,
    ) -> Arc<Store> {
        if self.deferred {
            self.store
                .start_after_restore(ingest.clone(), router.clone());
            return self.store;
        }
        for tracker in self.restored {
            if !publish_all(router, ingest.restore(tracker)).await {
                break;
            }
        }
        self.store.start();
        self.store
    }
}

/// Routes `messages`; false when the router is gone.
async fn publish_all(
    router: &tokio::sync::mpsc::Sender<RouterMsg>,
    messages: crate::ingest::Outputs,
) -> bool {
    for message in messages {
        if router
            .send(RouterMsg::Publish {
                message,
                qos2_pkid: None,
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Restores from Redis once it answers (Redis was down at start), keeping what ingest has
/// processed since start; returns early when the store is closed.
async fn late_restore(
    shared: &Shared,
    ingest: &Ingest,
    router: &tokio::sync::mpsc::Sender<RouterMsg>,
) {
    let mut backoff = writer::MIN_BACKOFF;
    loop {
        let mut conn = shared.conn.clone();
        let attempt = tokio::select! {
            r = restore::load(&mut conn, MAX_PENDING_VEHICLES, now_ms()) => Some(r),
            _ = shared.stop.cancelled() => None,
        };
        match attempt {
            None => return,
            Some(Ok(restored)) => {
                shared.mark_up(true);
                let total = restored.trackers.len();
                let mut unseen = 0;
                for tracker in restored.trackers {
                    if let Some(messages) = ingest.restore_unseen(tracker) {
                        unseen += 1;
                        if !publish_all(router, messages).await {
                            return;
                        }
                    }
                }
                tracing::info!(
                    vehicles = total,
                    restored = unseen,
                    "redis is back: restored the vehicles not seen since start"
                );
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "redis still unavailable; restore retried");
                shared.mark_up(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(writer::MAX_BACKOFF);
    }
}

/// Feeds processed state into the write-behind buffer.
pub struct RedisSink(Arc<Shared>);

impl RedisSink {
    /// The epoch `vehicle` is held under, with `--cluster`.
    fn epoch(&self, vehicle: &str) -> Option<u64> {
        self.0.fence.get().and_then(|f| f.epoch(vehicle))
    }
}

impl StateSink for RedisSink {
    fn state(&self, state: &Arc<VehicleState>) {
        let epoch = self.epoch(&state.vehicle);
        self.0.pending.state(StateJson::new(state.clone()), epoch);
    }

    /// The payload's JSON is what `HSET state` and the track store: kept, not made again.
    fn state_json(&self, state: &Arc<VehicleState>, json: &Arc<str>) {
        let epoch = self.epoch(&state.vehicle);
        let state = StateJson {
            state: state.clone(),
            json: json.clone(),
        };
        self.0.pending.state(state, epoch);
    }

    fn event(&self, _event: &Arc<Event>) {}

    fn snapshot(&self, tracker: &Tracker, state_json: &str) {
        self.0
            .pending
            .snapshot(tracker, state_json, self.epoch(tracker.vehicle()));
    }

    /// Restored states came from Redis: nothing to write back.
    fn restored(&self, _state: &Arc<VehicleState>) {}
}
