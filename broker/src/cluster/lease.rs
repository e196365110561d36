//! Vehicle ownership across nodes (`--cluster`, docs/redis.md#leases): one node processes a
//! vehicle at a time, under a lease stored in the vehicle's own hash `fleetmq:vehicle:{id}`
//! (fields `lease_owner`, `lease_epoch`, `lease_until`), so acquiring, renewing, the fenced
//! state writes and the release are single-key scripts that also run on Redis Cluster.
//!
//! - **Acquire** on the first fix of a vehicle this node does not hold, before it is processed
//!   (MQTT inbound, `ingest::Gate`): the script takes the lease and returns the stored tracker,
//!   which replaces the local one, so duplicates, jitter, Kalman and deviation streaks continue
//!   where the previous node left them. While another live node holds it, that node is asked
//!   to give it up (`handoff`) and this one waits, at most [`HANDOFF_WAIT`]; a holder that is
//!   not listening on Redis any more (killed) is taken over at once, with a new epoch.
//! - **Fencing**: every state/tracker write carries the epoch (`persist::fence`), so a paused
//!   old owner cannot overwrite a newer owner's state.
//! - **Renew** every [`RENEW_EVERY`], all held leases in pipelined batches (`renew`); a lease
//!   lasts [`LEASE_TTL`]: a node silent that long has lost its vehicles. A renewal refused
//!   (another node took the vehicle) drops the local tracker. A fenced state write that passes
//!   extends the lease as a renewal would, so a lease a write extended within
//!   [`RENEWED_BY_WRITE`] is skipped; after any refused or failed write the next round goes
//!   over every lease, so a lost one is found as before.
//! - **Release** (flush the tracker and give the lease up in one script) when the driver
//!   disconnects, when another node asks, after [`IDLE_RELEASE`] beyond `stale_after` without a
//!   fix, and for every lease at once on shutdown, before clients get DISCONNECT 0x8B.
//!
//! Redis unreachable: fixes are processed on the local tracker without a lease (each
//! node keeps serving its own clients, README "Running a cluster"); held leases are kept and renewed once Redis is back,
//! or dropped if another node took them meanwhile.
//!
//! # Layout
//! - `scripts`: the acquire and renew scripts and their replies.
//! - `batch`: first acquisitions of vehicles arriving together, many per script call.
//! - `handoff`: asking a holder to release over Redis pub/sub, and answering such requests.
//! - `renew`: the renewal and idle-release task.
//! - `stats`: the `fleetmq_cluster_lease*` metrics.

mod batch;
mod handoff;
mod renew;
mod scripts;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::persist::pubsub::PubSub;
use crate::persist::{Conn, PersistError, Target};
use dashmap::DashMap;
use redis::{RedisResult, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hash::FastState;
use crate::ingest::{Ingest, Outputs};
use crate::persist::fence::{FENCED_OUT, FENCED_WRITE, Fence};
use crate::persist::{Store, keys};
use scripts::{ACQUIRE, Acquired};
use stats::Stats;

/// How long a lease lasts without renewal (a node silent for 5 s is dead, README "Running a cluster").
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often held leases are renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A lease a fenced write extended this recently is not renewed: it runs at least
/// [`LEASE_TTL`] − this = 3 s more, two renewal rounds.
pub const RENEWED_BY_WRITE: Duration = Duration::from_secs(2);
/// Longest wait for another node's lease: longer than [`LEASE_TTL`], so a holder that stopped
/// renewing has always lost it by then.
pub const HANDOFF_WAIT: Duration = Duration::from_secs(6);
/// A vehicle without a fix for `stale_after` plus this is released (it went offline here
/// first, so its `offline` is not lost).
pub const IDLE_RELEASE: Duration = Duration::from_secs(5);
/// Time the releases at shutdown may take.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Leases per pipeline when renewing or releasing many.
const PER_PIPELINE: usize = 500;

/// Why a fix cannot be processed on this node now.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another node holds the vehicle and did not give it up within [`HANDOFF_WAIT`].
    #[error("vehicle is processed by node {0}; retry")]
    Busy(String),
    /// This node is shutting down: its leases are being released.
    #[error("node shutting down")]
    ShuttingDown,
}

/// One lease this node holds.
#[derive(Debug)]
struct Held {
    epoch: u64,
    /// Milliseconds since [`Leases::started`] of the last fix under this lease.
    last_used: AtomicU64,
    /// Milliseconds since [`Leases::started`] when the last fenced write that extended this
    /// lease was sent; [`NEVER`] before one.
    written: AtomicU64,
}

/// [`Held::written`] before any write.
const NEVER: u64 = u64::MAX;

/// The leases of this node; shared behind an `Arc` by connections, the gate, the Redis writer
/// (as its [`Fence`]) and the server.
pub struct Leases {
    node: Arc<str>,
    conn: Conn,
    /// The release channel of `handoff`.
    pubsub: PubSub,
    /// Looked up for every fix and output: foldhash, as the trackers' map ([`crate::hash`]).
    held: DashMap<Arc<str>, Held, FastState>,
    ingest: Arc<Ingest>,
    store: Arc<Store>,
    /// `--state-ttl`, ms (the fenced writes refresh it).
    state_ttl_ms: u64,
    /// `stale_after` + [`IDLE_RELEASE`].
    idle: Duration,
    started: Instant,
    /// Set by a refused or failed fenced write: the next renewal round skips nothing.
    renew_all: AtomicBool,
    /// Set by [`Leases::release_all`]: nothing is acquired any more.
    closing: CancellationToken,
    /// Stops the tasks.
    stop: CancellationToken,
    stats: Stats,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The way to `batch`'s task, once [`Leases::start`] ran it (before, and in tests that do
    /// not start it, each acquisition calls the script itself).
    batch: OnceLock<batch::Queue>,
}

impl Leases {
    /// Leases of node `node` on the Redis (or Redis Cluster) `target`, the one `store` writes to.
    ///
    /// # Errors
    /// `target` is not a usable Redis address.
    pub fn open(
        target: &Target,
        node: &str,
        ingest: Arc<Ingest>,
        store: Arc<Store>,
        state_ttl: Duration,
        stale_after: Duration,
    ) -> Result<Arc<Leases>, PersistError> {
        let leases = Arc::new(Leases {
            node: node.into(),
            conn: store.connection(),
            pubsub: PubSub::open(target)?,
            held: DashMap::with_hasher(FastState::default()),
            ingest,
            state_ttl_ms: u64::try_from(state_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            store: store.clone(),
            idle: stale_after + IDLE_RELEASE,
            started: Instant::now(),
            renew_all: AtomicBool::new(false),
            closing: CancellationToken::new(),
            stop: CancellationToken::new(),
            stats: Stats::default(),
            tasks: Mutex::new(Vec::new()),
            batch: OnceLock::new(),
        });
        store.set_fence(leases.clone());
        Ok(leases)
    }

    /// Starts renewing and answering release requests (on the current runtime).
    pub fn start(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(tokio::spawn(renew::run(self.clone())));
        tasks.push(tokio::spawn(handoff::listen(self.clone())));
        let (queue, requests) = batch::queue();
        if self.batch.set(queue).is_ok() {
            tasks.push(tokio::spawn(batch::run(self.clone(), requests)));
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this node holds `vehicle`, without marking it used.
    pub fn is_held(&self, vehicle: &str) -> bool {
        self.held.contains_key(vehicle)
    }

    /// Whether this node holds `vehicle` (a fix may be processed at once); marks it used.
    pub fn holds(&self, vehicle: &str) -> bool {
        match self.held.get(vehicle) {
            Some(h) => {
                h.last_used.store(self.now(), Relaxed);
                true
            }
            None => false,
        }
    }

    /// Makes sure this node may process `vehicle`: holds its lease already, acquires it (its
    /// tracker comes from Redis), or Redis is unreachable (processed without one).
    ///
    /// # Errors
    /// [`LeaseError`]: another node keeps it, or this node is shutting down.
    pub async fn acquire(&self, vehicle: &str) -> Result<(), LeaseError> {
        if self.holds(vehicle) {
            return Ok(());
        }
        if self.closing.is_cancelled() {
            return Err(LeaseError::ShuttingDown);
        }
        if !self.store.is_up() {
            self.stats.unleased.fetch_add(1, Relaxed);
            return Ok(());
        }
        let key = keys::vehicle(vehicle);
        let deadline = Instant::now() + HANDOFF_WAIT;
        let mut asked: Option<Instant> = None;
        let mut force = false;
        let mut conn = self.conn.clone();
        let mut first = true;
        loop {
            let answer = match self.batch.get() {
                // The first try joins the vehicles arriving at the same time (`batch`).
                Some(queue) if first => batch::acquire(queue, key.clone()).await,
                _ => self.acquire_one(&mut conn, &key, force).await,
            };
            first = false;
            match answer {
                // A request the batch task dropped as the node stopped.
                None if self.closing.is_cancelled() => return Err(LeaseError::ShuttingDown),
                None => {
                    self.stats.unleased.fetch_add(1, Relaxed);
                    return Ok(());
                }
                Some(Acquired::Got {
                    epoch,
                    tracker,
                    state,
                }) => {
                    self.adopt(vehicle, &key, epoch, tracker, state);
                    if asked.is_some() || force {
                        self.stats.handoffs.fetch_add(1, Relaxed);
                    }
                    if force {
                        self.stats.taken_over.fetch_add(1, Relaxed);
                    }
                    return Ok(());
                }
                Some(Acquired::Held { owner, left_ms }) => {
                    if self.closing.is_cancelled() {
                        return Err(LeaseError::ShuttingDown);
                    }
                    if asked.is_none_or(|t| t.elapsed() >= handoff::ASK_AGAIN) {
                        match handoff::ask(&mut conn, &owner, vehicle).await {
                            // Nobody listens on the holder's channel: it is gone (killed, or
                            // cut off from Redis, where its writes are fenced out anyway).
                            Ok(0) => {
                                tracing::info!(vehicle, owner, "lease: holder gone, taking over");
                                force = true;
                                continue;
                            }
                            Ok(_) => asked = Some(Instant::now()),
                            Err(_) => {
                                self.stats.unleased.fetch_add(1, Relaxed);
                                return Ok(());
                            }
                        }
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        self.stats.busy.fetch_add(1, Relaxed);
                        return Err(LeaseError::Busy(owner));
                    }
                    let pause = handoff::POLL
                        .min(Duration::from_millis(left_ms.max(1)))
                        .min(deadline - now);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.closing.cancelled() => return Err(LeaseError::ShuttingDown),
                    }
                }
            }
        }
    }

    /// One [`ACQUIRE`] call for `key` alone; `None` when Redis did not answer (or not as the
    /// script does).
    async fn acquire_one(&self, conn: &mut Conn, key: &str, force: bool) -> Option<Acquired> {
        let reply: RedisResult<Value> = ACQUIRE
            .call(conn, key, |c| {
                c.arg(&*self.node)
                    .arg(LEASE_TTL.as_millis() as u64)
                    .arg(self.state_ttl_ms)
                    .arg(if force { "force" } else { "" });
            })
            .await;
        match reply {
            Ok(reply) => Acquired::read_each(&reply, 1).pop().flatten(),
            Err(e) => {
                tracing::debug!(key, error = %e, "lease: redis unreachable, processing without a lease");
                None
            }
        }
    }

    /// Takes the lease won under `epoch` with the stored tracker into ingest.
    fn adopt(
        &self,
        vehicle: &str,
        key: &str,
        epoch: u64,
        tracker: Option<Vec<u8>>,
        state: Option<Vec<u8>>,
    ) {
        let now = self.ingest.now_ms();
        if let Some(t) = crate::persist::rebuild(key, tracker.as_deref(), state.as_deref(), now) {
            self.ingest.adopt(t);
        }
        self.held.insert(
            vehicle.into(),
            Held {
                epoch,
                last_used: AtomicU64::new(self.now()),
                written: AtomicU64::new(NEVER),
            },
        );
        self.stats.acquired.fetch_add(1, Relaxed);
    }

    /// The driver of `vehicles` disconnected: the ones with a tracker here (held, or processed
    /// without a lease while Redis was unreachable) go offline, the held ones' trackers are
    /// flushed and their leases released. Nothing while shutting down (every lease was released
    /// already, and a node going away is not the vehicles going offline).
    pub async fn disconnected(&self, vehicles: impl Iterator<Item = &str>) -> Outputs {
        if self.closing.is_cancelled() {
            return Vec::new();
        }
        let vehicles: Vec<&str> = vehicles.collect();
        // A vehicle another node took has no tracker here any more: nothing to mark.
        let out = self.ingest.disconnected(vehicles.iter().copied());
        self.release(vehicles.into_iter()).await;
        out
    }

    /// Flushes the trackers of `vehicles` and releases their leases (those this node holds),
    /// one pipeline per [`PER_PIPELINE`]; their local trackers are dropped.
    pub async fn release<'a>(&self, vehicles: impl Iterator<Item = &'a str>) {
        let taken: Vec<(Box<str>, u64)> = vehicles
            .filter_map(|v| self.held.remove(v).map(|(_, h)| (Box::from(v), h.epoch)))
            .collect();
        if taken.is_empty() {
            return;
        }
        for chunk in taken.chunks(PER_PIPELINE) {
            if let Err(e) = self.release_chunk(chunk).await {
                tracing::warn!(error = %e, vehicles = chunk.len(), "lease: release failed; the leases run out in 5 s");
            }
            for (v, _) in chunk {
                self.ingest.forget(v);
            }
        }
    }

    /// Flushes and releases `chunk`'s leases, one [`FENCED_WRITE`] each, pipelined per hash
    /// slot; a Redis that forgot the script (restarted) gets it again and the chunk once more.
    async fn release_chunk(&self, chunk: &[(Box<str>, u64)]) -> RedisResult<()> {
        // (key, epoch, state JSON, tracker snapshot); both empty without a tracker here: the
        // script then only releases.
        let writes: Vec<(String, u64, Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|(vehicle, epoch)| {
                let mut state_json = Vec::new();
                let mut snapshot = Vec::new();
                let written = self.ingest.with_tracker(vehicle, |t| {
                    if let Some(s) = t.state() {
                        s.write_json(&mut state_json);
                    }
                    t.write_snapshot(&mut snapshot, &state_json)
                });
                if let Some(Err(e)) = written {
                    tracing::error!(vehicle = &**vehicle, error = %e, "lease: tracker not serializable");
                    snapshot.clear();
                }
                (keys::vehicle(vehicle), *epoch, state_json, snapshot)
            })
            .collect();
        let results = FENCED_WRITE
            .query_each(&self.conn, PER_PIPELINE, |sha| {
                writes
                    .iter()
                    .map(|(key, epoch, state_json, snapshot)| {
                        let mut cmd = redis::cmd("EVALSHA");
                        cmd.arg(sha)
                            .arg(1)
                            .arg(key)
                            .arg(&*self.node)
                            .arg(*epoch)
                            .arg(self.state_ttl_ms)
                            .arg(state_json)
                            .arg(snapshot)
                            .arg("release");
                        (key.clone(), cmd)
                    })
                    .collect()
            })
            .await?;
        for r in results {
            match r {
                Ok(Value::Int(1)) => self.stats.released.fetch_add(1, Relaxed),
                Ok(Value::Int(FENCED_OUT)) => self.stats.lost.fetch_add(1, Relaxed),
                _ => 0,
            };
        }
        Ok(())
    }

    /// Shutdown: no more acquisitions; every held lease is flushed and released at once, before
    /// clients are disconnected, so their next fix on another node finds the vehicle free.
    pub async fn release_all(&self) {
        self.closing.cancel();
        let all: Vec<Arc<str>> = self.held.iter().map(|e| e.key().clone()).collect();
        let count = all.len();
        let released = tokio::time::timeout(CLOSE_WAIT, self.release(all.iter().map(|v| &**v)));
        match released.await {
            Ok(()) => tracing::info!(vehicles = count, "lease: released every lease"),
            Err(_) => tracing::warn!(vehicles = count, "lease: releases timed out"),
        }
    }

    /// Stops the tasks (after [`Leases::release_all`]).
    pub async fn close(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// A renewal was refused: another node took `vehicle` (or its hash expired); stop
    /// processing it here.
    fn lost(&self, vehicle: &str, epoch: u64) {
        if self
            .held
            .remove_if(vehicle, |_, h| h.epoch == epoch)
            .is_some()
        {
            self.ingest.forget(vehicle);
            self.stats.lost.fetch_add(1, Relaxed);
            tracing::info!(
                vehicle,
                "lease: lost to another node; dropped the local tracker"
            );
        }
    }

    /// Appends the `fleetmq_cluster_lease*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        self.stats.render(out, self.held.len());
    }
}

impl Fence for Leases {
    fn node(&self) -> &str {
        &self.node
    }

    fn epoch(&self, vehicle: &str) -> Option<u64> {
        self.held.get(vehicle).map(|h| h.epoch)
    }

    fn lease_ms(&self) -> u64 {
        LEASE_TTL.as_millis() as u64
    }

    fn renewed_by_write(&self, vehicles: &mut dyn Iterator<Item = &str>, sent: Instant) {
        let at = u64::try_from(sent.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX - 1);
        for vehicle in vehicles {
            if let Some(h) = self.held.get(vehicle) {
                h.written.store(at, Relaxed);
            }
        }
    }

    fn write_refused(&self) {
        self.renew_all.store(true, Relaxed);
    }
}
