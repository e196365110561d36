//! The task that talks to Redis for durable sessions: it takes the router's ops in order,
//! sends runs of writes (queue appends, sent marks, acks) as one batch of per-slot pipelines,
//! answers opens and reads with events, and keeps the table of sessions ([`super::Known`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use redis::{Cmd, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Known, SESSIONS_CHANGED, SESSIONS_KEY, SYNC_EVERY, queue_key, sent_key, valid, wire};
use crate::cluster::Membership;
use crate::cluster::frame;
use crate::cluster::routing::inbox;
use crate::message::Message;
use crate::persist::Conn;
use crate::persist::conn::query_each;
use crate::persist::pubsub::Publisher;
use crate::router::durable::{Done, EntryId, Event, Op, OpStats, Record, Resumed, Stored, Target};

/// Ops taken off the queue at once: their writes go out as one batch.
const BATCH: usize = 512;
/// Commands per pipeline.
const PER_PIPELINE: usize = 256;

/// Writes the record only if it still names this node (`ARGV[2]`).
const SAVE_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local ok, r = pcall(cjson.decode, cur)
if not ok or type(r) ~= 'table' or r.node ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

/// Replaces (`ARGV[3]`, or deletes when empty) the record only if it is still `ARGV[2]`.
const SWAP_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

/// Forgets of a run that were not done: how many, and the first failure.
struct Unforgotten {
    count: usize,
    first: redis::RedisError,
}

pub(super) struct Task {
    pub(super) node: Arc<str>,
    pub(super) known: Arc<Known>,
    pub(super) conn: Conn,
    pub(super) publisher: Publisher,
    pub(super) membership: Arc<Membership>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) max_queued: usize,
    /// The sessions this node holds (opened and not yet ended or moved).
    pub(super) held: HashSet<Arc<str>>,
    pub(super) stats: Arc<OpStats>,
}

/// A run of writes waiting to go out: the commands, and for each publish its done and the
/// range of its commands.
#[derive(Default)]
struct Writes {
    cmds: Vec<(String, Cmd)>,
    persists: Vec<Persisted>,
    /// The commands of each progress op (sent mark, ack): counted as dropped when one fails.
    marks: Vec<std::ops::Range<usize>>,
}

/// One publish in a run of writes.
struct Persisted {
    message: Arc<Message>,
    done: Option<Done>,
    /// Its commands in the run.
    range: std::ops::Range<usize>,
    targets: Vec<Target>,
    live_on_failure: bool,
}

impl Task {
    pub(super) async fn run(
        mut self,
        mut ops: mpsc::Receiver<Op>,
        mut notices: mpsc::Receiver<(String, Bytes)>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                n = ops.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.ops(batch.drain(..)).await;
                }
                Some((_, payload)) = notices.recv() => match wire::read_notice(payload) {
                    Ok((id, record)) => self.known.set(&id, record),
                    Err(e) => tracing::debug!(error = %e, "sessions: unreadable notice"),
                },
                _ = tick.tick() => self.sync().await,
            }
        }
    }

    /// Runs ops in order; consecutive writes go out together, and the queue reads among them
    /// together after them (a read does not depend on a write of the same run: what it would
    /// miss is woken, or polled, again).
    async fn ops(&mut self, ops: impl Iterator<Item = Op>) {
        let mut writes = Writes::default();
        // A session's queue is read once per run: a second read would find at most what came
        // after the first, which its wake or the poll brings anyway.
        let mut reads: Vec<(Arc<str>, EntryId)> = Vec::new();
        let mut read: HashSet<Arc<str>> = HashSet::new();
        // A run of forgets (a connect storm of clean-start clients) goes out together too; an
        // op of another kind waits for it, and it for the writes and reads before it, so every
        // op still takes effect in order.
        let mut forgets: Vec<(Arc<str>, bool)> = Vec::new();
        for op in ops {
            if !forgets.is_empty() && !matches!(op, Op::Forget { .. }) {
                self.forget(std::mem::take(&mut forgets)).await;
            }
            match op {
                Op::Forget {
                    client_id,
                    mine_only,
                } => {
                    if forgets.is_empty() {
                        self.flush(std::mem::take(&mut writes)).await;
                        self.read_all(std::mem::take(&mut reads)).await;
                        read.clear();
                    }
                    self.held.remove(&client_id);
                    forgets.push((client_id, mine_only));
                }
                Op::Read { client_id, after } => {
                    if read.insert(client_id.clone()) {
                        reads.push((client_id, after));
                    }
                }
                Op::Persist {
                    message,
                    targets,
                    done,
                    live_on_failure,
                } => {
                    let frame = frame::publish(&message, &[], "", &[]);
                    let start = writes.cmds.len();
                    for t in &targets {
                        let key = queue_key(&t.client_id);
                        let mut cmd = redis::cmd("XADD");
                        cmd.arg(&key)
                            .arg("MAXLEN")
                            .arg(self.max_queued.max(1))
                            .arg("*")
                            .arg("d")
                            .arg(&wire::entry(t.qos, t.retain, &t.sub_ids, &frame)[..]);
                        writes.cmds.push((key, cmd));
                    }
                    writes.persists.push(Persisted {
                        message,
                        done,
                        range: start..writes.cmds.len(),
                        targets,
                        live_on_failure,
                    });
                }
                Op::Sent {
                    client_id,
                    id,
                    pkid,
                    released,
                } => {
                    let key = sent_key(&client_id);
                    let mut cmd = redis::cmd("HSET");
                    cmd.arg(&key)
                        .arg(id.to_string())
                        .arg(wire::sent(pkid, released));
                    let start = writes.cmds.len();
                    writes.cmds.push((key, cmd));
                    writes.marks.push(start..writes.cmds.len());
                }
                Op::Acked { client_id, id } => {
                    let start = writes.cmds.len();
                    let key = queue_key(&client_id);
                    let mut cmd = redis::cmd("XDEL");
                    cmd.arg(&key).arg(id.to_string());
                    writes.cmds.push((key, cmd));
                    let key = sent_key(&client_id);
                    let mut cmd = redis::cmd("HDEL");
                    cmd.arg(&key).arg(id.to_string());
                    writes.cmds.push((key, cmd));
                    writes.marks.push(start..writes.cmds.len());
                }
                other => {
                    self.flush(std::mem::take(&mut writes)).await;
                    self.read_all(std::mem::take(&mut reads)).await;
                    read.clear();
                    self.op(other).await;
                }
            }
        }
        // At most one of the two is left: each kind flushes the other when it comes.
        self.forget(forgets).await;
        self.flush(writes).await;
        self.read_all(reads).await;
    }

    /// Reads these sessions' queues after the given entries, in per-slot pipelines, and hands
    /// what they hold to the router.
    async fn read_all(&mut self, reads: Vec<(Arc<str>, EntryId)>) {
        if reads.is_empty() {
            return;
        }
        let cmds = reads
            .iter()
            .map(|(client_id, after)| {
                let key = queue_key(client_id);
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(&key)
                    .arg(range_start(*after))
                    .arg("+")
                    .arg("COUNT")
                    .arg(self.max_queued.max(1));
                (key, cmd)
            })
            .collect();
        let results = match query_each(&self.conn, cmds, PER_PIPELINE).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "sessions: queues not read");
                return;
            }
        };
        let now = u64::try_from(crate::ingest::now_ms()).unwrap_or(0);
        let mut unreadable = Vec::new();
        for ((client_id, _), result) in reads.into_iter().zip(results) {
            let reply = match result {
                Ok(v) => redis::from_redis_value::<redis::streams::StreamRangeReply>(v)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let entries = match reply {
                Ok(reply) => entries(&client_id, reply, now, &mut unreadable),
                Err(e) => {
                    tracing::debug!(error = %e, "sessions: queue not read");
                    continue;
                }
            };
            if !entries.is_empty() {
                let _ = self
                    .events
                    .send(Event::Entries { client_id, entries })
                    .await;
            }
        }
        self.delete(unreadable).await;
    }

    /// Deletes unreadable queue entries (`XDEL`; the commands of [`entries`]): left, they
    /// would be read again on every poll, never passed (the session's last entry stays before
    /// them).
    async fn delete(&self, cmds: Vec<(String, Cmd)>) {
        if cmds.is_empty() {
            return;
        }
        if let Err(e) = query_each(&self.conn, cmds, PER_PIPELINE).await {
            tracing::debug!(error = %e, "sessions: unreadable entries not deleted");
        }
    }

    /// Sends a run of writes; tells each publish whether its appends went through and wakes
    /// the nodes holding its sessions.
    async fn flush(&mut self, writes: Writes) {
        if writes.cmds.is_empty() {
            return;
        }
        let results = query_each(&self.conn, writes.cmds, PER_PIPELINE).await;
        // One result per command; a shorter answer counts the missing ones as failed.
        let acked = |range: std::ops::Range<usize>| match &results {
            Ok(r) => r
                .get(range)
                .map_or(0, |r| r.iter().filter(|r| r.is_ok()).count()),
            Err(_) => 0,
        };
        let failed_marks = writes
            .marks
            .into_iter()
            .filter(|m| acked(m.clone()) < m.len())
            .count();
        self.drop_unavailable(failed_marks);
        let mut wake_here = Vec::new();
        let mut wake: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
        for p in writes.persists {
            let appended = acked(p.range.clone());
            self.stats.appends.fetch_add(appended as u64, Relaxed);
            let ok = appended == p.range.len();
            if !ok {
                self.drop_unavailable(1);
            }
            if let Some(done) = p.done {
                done(ok);
            }
            if !ok {
                if p.live_on_failure {
                    let event = Event::Unstored {
                        message: p.message,
                        targets: p.targets,
                    };
                    let _ = self.events.send(event).await;
                }
                continue;
            }
            for t in p.targets {
                if t.node == self.node {
                    wake_here.push(Box::from(&*t.client_id));
                } else {
                    wake.entry(t.node).or_default().push(t.client_id);
                }
            }
        }
        if let Err(e) = &results {
            tracing::debug!(error = %e, "sessions: writes not acknowledged");
        }
        for (node, ids) in wake {
            let ids: Vec<&str> = ids.iter().map(|s| &**s).collect();
            self.publisher.publish(&inbox(&node), frame::wake(&ids));
        }
        if !wake_here.is_empty() {
            // Waits while the router is behind: it reads these events before its clients'
            // messages, so the wait is short, and nothing is lost.
            let _ = self
                .events
                .send(Event::Wake {
                    client_ids: wake_here,
                })
                .await;
        }
    }

    /// Counts ops Redis did not acknowledge.
    fn drop_unavailable(&self, n: usize) {
        if n > 0 {
            self.stats.dropped_unavailable.fetch_add(n as u64, Relaxed);
        }
    }

    async fn op(&mut self, op: Op) {
        match op {
            Op::Open {
                client_id,
                clean_start,
                load,
                record,
            } => {
                let result = self.open(&client_id, clean_start, load, record).await;
                if let Err(e) = &result {
                    tracing::warn!(client_id = %client_id, error = %e, "sessions: session not opened");
                }
                let result = result.map_err(|_| ());
                let _ = self.events.send(Event::Opened { client_id, result }).await;
            }
            Op::Save {
                client_id,
                record,
                done,
            } => {
                let ok = self.save(&client_id, &record).await;
                if !ok {
                    self.drop_unavailable(1);
                }
                if let Some(done) = done {
                    done(ok);
                }
            }
            Op::Forget {
                client_id,
                mine_only,
            } => {
                self.held.remove(&client_id);
                self.forget(vec![(client_id, mine_only)]).await;
            }
            Op::Drop { client_id } => {
                self.held.remove(&client_id);
            }
            Op::Read { .. } | Op::Persist { .. } | Op::Sent { .. } | Op::Acked { .. } => {}
        }
    }

    /// Deletes what was stored (clean start), reads it back (resume), then writes `record`.
    async fn open(
        &mut self,
        client_id: &Arc<str>,
        clean_start: bool,
        load: bool,
        mut record: Record,
    ) -> redis::RedisResult<Option<Resumed>> {
        if clean_start {
            self.forget_all(vec![(client_id.clone(), false)])
                .await
                .map_err(|u| u.first)?;
        }
        let mut resumed = None;
        if load {
            let old: Option<String> = redis::cmd("HGET")
                .arg(SESSIONS_KEY)
                .arg(&**client_id)
                .query_async(&mut self.conn)
                .await?;
            if let Some(old) = old {
                match serde_json::from_str::<Record>(&old) {
                    Ok(old) => {
                        let entries = self.load(client_id).await?;
                        record.subs.clone_from(&old.subs);
                        resumed = Some(Resumed {
                            record: old,
                            entries,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(client_id = %client_id, error = %e, "sessions: unreadable record; starting afresh")
                    }
                }
            }
        }
        if record.expiry == 0 {
            // Resumed for this connection only: it ends with it, nothing stays stored.
            self.forget_all(vec![(client_id.clone(), false)])
                .await
                .map_err(|u| u.first)?;
            return Ok(resumed);
        }
        let json = serde_json::to_string(&record).unwrap_or_default();
        let _: () = redis::cmd("HSET")
            .arg(SESSIONS_KEY)
            .arg(&**client_id)
            .arg(&json)
            .query_async(&mut self.conn)
            .await?;
        self.held.insert(client_id.clone());
        self.announce(client_id, Some(record));
        Ok(resumed)
    }

    /// A session's whole queue with the sent marks.
    async fn load(&mut self, client_id: &str) -> redis::RedisResult<Vec<Stored>> {
        let marks: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(sent_key(client_id))
            .query_async(&mut self.conn)
            .await?;
        let mut entries = self.range(client_id, "-").await?;
        for e in &mut entries {
            e.sent = marks
                .get(&e.id.to_string())
                .and_then(|m| wire::read_sent(m));
        }
        // Marks of entries no longer queued (trimmed by MAXLEN while sent, deleted while the
        // mark's delete was lost, unreadable) would stay until the session ends: deleted now,
        // when the whole queue was read.
        if entries.len() < self.max_queued.max(1) {
            let queued: HashSet<String> = entries.iter().map(|e| e.id.to_string()).collect();
            let stale: Vec<&String> = marks.keys().filter(|k| !queued.contains(*k)).collect();
            if !stale.is_empty() {
                let _: () = redis::cmd("HDEL")
                    .arg(sent_key(client_id))
                    .arg(&stale)
                    .query_async(&mut self.conn)
                    .await?;
            }
        }
        Ok(entries)
    }

    /// The queue entries from `start`, oldest first; unreadable ones are skipped.
    async fn range(&mut self, client_id: &str, start: &str) -> redis::RedisResult<Vec<Stored>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(queue_key(client_id))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(self.max_queued.max(1))
            .query_async(&mut self.conn)
            .await?;
        let now = u64::try_from(crate::ingest::now_ms()).unwrap_or(0);
        let mut unreadable = Vec::new();
        let entries = entries(client_id, reply, now, &mut unreadable);
        self.delete(unreadable).await;
        Ok(entries)
    }

    /// Writes the record of a session this node still holds.
    async fn save(&mut self, client_id: &Arc<str>, record: &Record) -> bool {
        let json = serde_json::to_string(record).unwrap_or_default();
        let result: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(SAVE_SCRIPT)
            .arg(1)
            .arg(SESSIONS_KEY)
            .arg(&**client_id)
            .arg(&*self.node)
            .arg(&json)
            .query_async(&mut self.conn)
            .await;
        match result {
            Ok(1) => {
                self.announce(client_id, Some(record.clone()));
                true
            }
            // Another node holds it now (or it was deleted): nothing of ours to keep.
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "sessions: record not written");
                false
            }
        }
    }

    /// [`Self::forget_all`] for the router, which does not wait for a forget: each one not
    /// done is counted as dropped, the first failure logged.
    async fn forget(&mut self, forgets: Vec<(Arc<str>, bool)>) {
        if let Err(Unforgotten { count, first }) = self.forget_all(forgets).await {
            self.drop_unavailable(count);
            tracing::debug!(error = %first, "sessions: session not deleted");
        }
    }

    /// Deletes each session's record, queue and marks; with `mine_only` only when the record
    /// names this node. Two round trips for the whole run: the records (one key, one
    /// pipeline), then the queues and marks of those deleted (and, without `mine_only`, of
    /// every one: a queue whose record went in an earlier failed attempt must not outlive it).
    /// Only a record that was there is announced: the others' tables cannot hold one that
    /// never was (a stale copy goes at their next full read).
    ///
    /// # Errors
    /// How many were not done, and the first failure; the others are done.
    async fn forget_all(&mut self, forgets: Vec<(Arc<str>, bool)>) -> Result<(), Unforgotten> {
        if forgets.is_empty() {
            return Ok(());
        }
        let records = forgets
            .iter()
            .map(|(client_id, mine_only)| {
                let cmd = if *mine_only {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(SAVE_SCRIPT)
                        .arg(1)
                        .arg(SESSIONS_KEY)
                        .arg(&**client_id)
                        .arg(&*self.node)
                        .arg("");
                    cmd
                } else {
                    let mut cmd = redis::cmd("HDEL");
                    cmd.arg(SESSIONS_KEY).arg(&**client_id);
                    cmd
                };
                (SESSIONS_KEY.to_string(), cmd)
            })
            .collect();
        let deleted = match query_each(&self.conn, records, PER_PIPELINE).await {
            Ok(replies) => replies,
            Err(first) => {
                return Err(Unforgotten {
                    count: forgets.len(),
                    first,
                });
            }
        };
        let mut failed = 0;
        let mut first_error = None;
        let mut gone = Vec::new();
        let mut cmds = Vec::new();
        for ((client_id, mine_only), reply) in forgets.into_iter().zip(deleted) {
            let was_there = match reply {
                Ok(Value::Int(n)) => n > 0,
                Ok(_) => false,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            if !was_there && mine_only {
                continue;
            }
            for key in [queue_key(&client_id), sent_key(&client_id)] {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(&key);
                cmds.push((key, cmd));
            }
            if was_there {
                gone.push(client_id);
            }
        }
        for client_id in gone {
            self.announce(&client_id, None);
        }
        // A queue or mark not deleted fails its forget (two commands each).
        let deletes = cmds.len() / 2;
        if deletes > 0 {
            match query_each(&self.conn, cmds, PER_PIPELINE).await {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    while let Some(queue) = replies.next() {
                        let sent = replies.next().unwrap_or(Ok(Value::Nil));
                        if let Err(e) = queue.and(sent) {
                            failed += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    failed += deletes;
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(first) => Err(Unforgotten {
                count: failed,
                first,
            }),
        }
    }

    /// Updates this node's table and tells the others.
    fn announce(&self, client_id: &str, record: Option<Record>) {
        self.publisher
            .publish(SESSIONS_CHANGED, wire::notice(client_id, record.as_ref()));
        self.known.set(client_id, record);
    }

    /// Reads the whole table; expires the sessions whose node is gone.
    async fn sync(&mut self) {
        let all: redis::RedisResult<HashMap<String, String>> = redis::cmd("HGETALL")
            .arg(SESSIONS_KEY)
            .query_async(&mut self.conn)
            .await;
        let all = match all {
            Ok(all) => all,
            Err(e) => {
                tracing::debug!(error = %e, "sessions: table not read");
                return;
            }
        };
        let mut table = HashMap::with_capacity(all.len());
        let mut orphans = Vec::new();
        let live: HashSet<String> = self.membership.nodes().into_iter().map(|n| n.id).collect();
        for (client_id, raw) in all {
            let Ok(record) = serde_json::from_str::<Record>(&raw) else {
                tracing::debug!(client_id, "sessions: unreadable record; ignored");
                continue;
            };
            let client_id: Arc<str> = client_id.into();
            let gone = !live.contains(&record.node)
                || (*record.node == *self.node && !self.held.contains(&client_id));
            if gone {
                orphans.push((client_id.clone(), raw, record.clone()));
            }
            table.insert(client_id, valid(record));
        }
        self.known.replace(table);
        // A stale membership (Redis was away) would make live nodes look dead.
        if self.membership.is_up() {
            for (client_id, raw, record) in orphans {
                self.orphan(&client_id, &raw, record).await;
            }
        }
    }

    /// A session no node holds: marked disconnected now, deleted once its expiry passed.
    async fn orphan(&mut self, client_id: &str, raw: &str, mut record: Record) {
        let now = u64::try_from(crate::ingest::now_ms()).unwrap_or(0);
        let replace = match record.disconnected_at {
            None => {
                record.disconnected_at = Some(now);
                serde_json::to_string(&record).unwrap_or_default()
            }
            Some(at)
                if record.expiry != u32::MAX
                    && at.saturating_add(u64::from(record.expiry) * 1000) <= now =>
            {
                String::new()
            }
            Some(_) => return,
        };
        let swapped: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(SWAP_SCRIPT)
            .arg(1)
            .arg(SESSIONS_KEY)
            .arg(client_id)
            .arg(raw)
            .arg(&replace)
            .query_async(&mut self.conn)
            .await;
        if !matches!(swapped, Ok(1)) {
            return; // resumed meanwhile, or Redis away: the next sync looks again
        }
        if replace.is_empty() {
            let _: redis::RedisResult<()> = redis::pipe()
                .del(queue_key(client_id))
                .ignore()
                .del(sent_key(client_id))
                .ignore()
                .query_async(&mut self.conn)
                .await;
            self.announce(client_id, None);
        } else {
            self.announce(client_id, Some(record));
        }
    }
}

/// The `XRANGE` start after entry `after` (`-`: from the first).
fn range_start(after: EntryId) -> String {
    if after == EntryId::default() {
        "-".to_owned()
    } else {
        format!("({after}")
    }
}

/// The readable entries of an `XRANGE` reply, oldest first; for each unreadable one (Redis is
/// writable by others) an `XDEL` is added to `unreadable`.
fn entries(
    client_id: &str,
    reply: redis::streams::StreamRangeReply,
    now_ms: u64,
    unreadable: &mut Vec<(String, Cmd)>,
) -> Vec<Stored> {
    let mut out = Vec::with_capacity(reply.ids.len());
    for e in reply.ids {
        let read = match (e.id.parse::<EntryId>(), e.map.get("d")) {
            (Ok(id), Some(Value::BulkString(d))) => {
                wire::read_entry(Bytes::copy_from_slice(d), id, now_ms).map(|d| (id, d))
            }
            _ => Err(frame::FrameError::Malformed("queue entry without data")),
        };
        match read {
            Ok((id, delivery)) => out.push(Stored {
                id,
                delivery,
                sent: None,
            }),
            Err(err) => {
                tracing::warn!(client_id, id = e.id, error = %err, "sessions: unreadable queue entry; deleted");
                let key = queue_key(client_id);
                let mut cmd = redis::cmd("XDEL");
                cmd.arg(&key).arg(&e.id);
                unreadable.push((key, cmd));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sessions_keys_share_one_slot() {
        for id in ["a", "x}y", "{z}", "veh-1"] {
            assert_eq!(
                crate::persist::keys::slot(&super::queue_key(id)),
                crate::persist::keys::slot(&super::sent_key(id)),
                "{id}"
            );
        }
    }
}
