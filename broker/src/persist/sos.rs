//! The SOS stream: `fleet/{id}/sos` is appended to `fleetmq:sos` (`XADD ... MAXLEN ~ 100000 *`).
//! The local log (`crate::sos_log`) has it on disk before anyone is notified; while Redis is up
//! the connection also waits for Redis's acknowledgement, for at most [`SOS_WAIT`]. Unwritten
//! records stay queued here, bounded by [`SOS_QUEUE`], until Redis is back.
//!
//! Each record carries the local log's id and is written by one script that adds the id to
//! `{fleetmq:sos}:seen` and appends to the stream only when the id is new, so the log replayed at
//! every start stores each SOS once. The script's two keys share a hash slot (the tag
//! `{fleetmq:sos}` hashes like the stream's name), as a script on a Redis Cluster must; the
//! published `fleetmq:sos:ids` is in another slot and is written after it ([`write`]).
//!
//! SOS messages have their own task so an emergency never queues behind a large state flush.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::Shared;
use super::conn::Conn;
use super::keys;
use super::writer::{MAX_BACKOFF, MIN_BACKOFF};

/// Longest a driver's SOS waits for Redis before it is published unpersisted.
pub const SOS_WAIT: Duration = Duration::from_secs(2);
/// SOS messages kept while Redis is down; beyond it the oldest is dropped (and logged).
pub const SOS_QUEUE: usize = 10_000;

/// One SOS waiting to be written.
#[derive(Debug)]
pub struct SosRecord {
    /// Unique id (the local log's), stored once.
    pub id: String,
    /// The vehicle id from `fleet/{id}/sos`.
    pub vehicle: String,
    /// Broker clock when it arrived, Unix ms.
    pub ts: i64,
    /// The driver's payload, as published.
    pub payload: Vec<u8>,
    /// Told when written; the waiting connection may have given up (receiver dropped).
    pub done: Option<oneshot::Sender<()>>,
}

/// The bounded queue between connections and the SOS task.
#[derive(Debug, Default)]
pub struct SosQueue {
    queue: Mutex<VecDeque<SosRecord>>,
    notify: Notify,
}

impl SosQueue {
    /// SOS messages not yet written.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Queues `record` and wakes the task.
    pub fn push(&self, record: SosRecord) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= SOS_QUEUE
                && let Some(old) = q.pop_front()
            {
                tracing::error!(vehicle = %old.vehicle, ts = old.ts, "SOS queue full while Redis is down: oldest SOS dropped unpersisted");
            }
            q.push_back(record);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<SosRecord> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn unpop(&self, record: SosRecord) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_front(record);
    }
}

/// Writes queued SOS messages in order until the store is closed.
pub async fn run(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(mut record) = shared.sos.pop() else {
            tokio::select! {
                _ = shared.sos.notify.notified() => continue,
                _ = shared.stop.cancelled() => return,
            }
        };
        match write(&mut conn, &record).await {
            Ok(()) => {
                shared.stats.sos_written.fetch_add(1, Relaxed);
                shared.mark_up(true);
                backoff = MIN_BACKOFF;
                if let Some(done) = record.done.take() {
                    let _ = done.send(());
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "SOS write failed; retrying");
                shared.stats.errors.fetch_add(1, Relaxed);
                shared.mark_up(false);
                shared.sos.unpop(record);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Appends to the stream unless the id is in the co-located [`keys::SOS_SEEN`] already (one
/// atomic script on one hash slot). The ids are sorted sets by arrival time holding the newest
/// [`keys::SOS_IDS_KEPT`]: far more than the local log replays ([`crate::sos_log::REPLAY_MAX`]),
/// and bounded.
const WRITE_ONCE: &str = r"
if redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
    'vehicle', ARGV[3], 'ts', ARGV[4], 'payload', ARGV[5], 'id', ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[6]) - 1)
  return 1
end
return 0";

/// Writes `r` once: skipped when the published [`keys::SOS_IDS`] lists it (stored earlier, also
/// by a version without [`keys::SOS_SEEN`]), else the [`WRITE_ONCE`] script, then its id into
/// [`keys::SOS_IDS`]. That set lives in another slot, so on a Redis Cluster it cannot join the
/// script; a failure after the script is retried as a whole, and the script then skips the append.
async fn write(conn: &mut Conn, r: &SosRecord) -> redis::RedisResult<()> {
    let stored: Option<f64> = redis::cmd("ZSCORE")
        .arg(keys::SOS_IDS)
        .arg(&r.id)
        .query_async(conn)
        .await?;
    if stored.is_some() {
        return Ok(());
    }
    let kept = i64::try_from(keys::SOS_IDS_KEPT).unwrap_or(i64::MAX);
    redis::cmd("EVAL")
        .arg(WRITE_ONCE)
        .arg(2)
        .arg(keys::SOS)
        .arg(keys::SOS_SEEN)
        .arg(&r.id)
        .arg(keys::SOS_MAXLEN)
        .arg(&r.vehicle)
        .arg(r.ts)
        .arg(&r.payload)
        .arg(kept)
        .query_async::<i64>(conn)
        .await?;
    redis::pipe()
        .cmd("ZADD")
        .arg(keys::SOS_IDS)
        .arg("NX")
        .arg(r.ts)
        .arg(&r.id)
        .ignore()
        .cmd("ZREMRANGEBYRANK")
        .arg(keys::SOS_IDS)
        .arg(0)
        .arg(-kept - 1)
        .ignore()
        .exec_async(conn)
        .await
}
