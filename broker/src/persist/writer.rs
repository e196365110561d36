//! The write-behind task: every [`FLUSH_INTERVAL`] it takes what [`Pending`] buffered and writes
//! it as pipelined batches (docs/redis.md#write-behind):
//! `HSET fleetmq:vehicle:{id} state <json> tracker <snapshot>` + `PEXPIRE` (state TTL, when due:
//! [`super::expiry`]),
//! `GEOADD fleetmq:geo lon lat {id} ...` (`ZREM` for a vehicle gone offline) and `XADD fleetmq:track:{id} MAXLEN ~ 10000 {ts}-0 state <json>`.
//!
//! Nothing here runs on the publish path: the ingest side only touches [`Pending`].
//!
//! # Faults
//! A failed round trip marks Redis down and puts the whole batch back (newer updates that came
//! meanwhile win). Writes are idempotent, so replaying a partly written batch is harmless: `HSET`,
//! `PEXPIRE` and `GEOADD` overwrite, and a track entry's id is the fix's device time (`{ts}-0`), so
//! a replayed `XADD` is refused as "not newer" and ignored. While down the task PINGs with
//! backoff ([`MIN_BACKOFF`]..[`MAX_BACKOFF`]) and flushes everything as soon as a PING succeeds,
//! which bounds the time from recovery to "all written" by `MAX_BACKOFF` plus the flush itself.
//!
//! # Pipelines
//! Commands are cut into pipelines ([`plan`]): every [`COMMANDS_PER_PIPELINE`] on one node; on a
//! Redis Cluster, vehicles ordered by the hash slot of their `fleetmq:vehicle:{id}` key, per hash
//! slot, where `fleetmq:geo` (one key, one slot) gets pipelines of its own; see
//! [`super::keys`] for the key scheme.
//! Up to [`conn::PIPELINES_IN_FLIGHT`] pipelines are in flight at once.
//!
//! # Fencing (`--cluster`)
//! With a [`super::fence::Fence`] set, the `HSET` + `PEXPIRE` of a vehicle becomes part of a
//! [`FENCED_WRITE_MANY`] script call (up to [`FENCED_PER_CALL`] vehicles of one hash slot),
//! carrying the epoch each entry was computed under; a vehicle this node does not hold gets no
//! hash write (its track entry and position still go out, keyed by the fix). Refusals are
//! counted in `fleetmq_redis_fenced_total`. A write that passes extends the vehicle's lease too;
//! the fence is told which ones did ([`super::fence::Fence::renewed_by_write`]), or that some
//! did not (`write_refused`), so the lease renewal skips only leases a write just extended.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use geo_engine::{VehicleState, VehicleStatus};
use redis::{Pipeline, RedisResult, Value};

use super::Shared;
use super::conn::{self, Conn};
use super::expiry::Expiry;
use super::fence::{FENCED_OUT, FENCED_WRITE_MANY, no_script};
use super::keys::{self, Key};
use super::pending::{Batch, Entry};
use crate::hash::FastMap;

/// Longest time an update waits in the buffer before its batch is written
/// (docs/redis.md#write-behind).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after Redis went away.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay while Redis is down.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Commands per pipeline (about 1,000 vehicles' hash and track point; their TTL extensions
/// are few): large enough to amortise round trips, small enough to keep one pipeline's
/// buffers within a couple of megabytes.
pub const COMMANDS_PER_PIPELINE: usize = 2000;
/// Vehicles per [`FENCED_WRITE_MANY`] call: Redis runs one script at a time, so a call stays
/// short (well under a millisecond).
const FENCED_PER_CALL: usize = 100;
/// Bytes per [`FENCED_WRITE_MANY`] call (about 50 vehicles' state and tracker): a call of
/// 100 vehicles was ~250 KB, above the allocator's mmap threshold, so each flush took its
/// command buffers from fresh pages that the kernel zeroed (23 % of a cluster node's CPU in a
/// profile); buffers this small are reused.
const FENCED_BYTES_PER_CALL: usize = 64 * 1024;
/// Members per `GEOADD` / `ZREM` of `fleetmq:geo`.
const GEO_MEMBERS_PER_COMMAND: usize = 1000;
/// With nothing to write, the connection is checked this often so `fleetmq_redis_up` and
/// `/readyz` notice an outage without traffic.
const IDLE_PING: Duration = Duration::from_secs(1);
/// Time the final flush at shutdown may take.
const FINAL_FLUSH: Duration = Duration::from_secs(3);
/// Largest latitude Redis geo sets accept, degrees.
const GEO_MAX_LAT: f64 = 85.051_128_78;

/// Runs until the store is closed, then writes what is left (bounded by [`FINAL_FLUSH`]).
pub async fn run(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = MIN_BACKOFF;
    let mut last_contact = Instant::now();
    let mut expiry = Expiry::new(Duration::from_millis(shared.ttl_ms), Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.stop.cancelled() => break,
        }
        if !shared.stats.up.load(Relaxed) || last_contact.elapsed() >= IDLE_PING {
            if ping(&mut conn).await {
                shared.mark_up(true);
                backoff = MIN_BACKOFF;
                last_contact = Instant::now();
            } else {
                shared.mark_up(false);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        let (number, batch) = shared.pending.take();
        if batch.is_empty() {
            shared.written.send_replace(number);
            continue;
        }
        match flush(&shared, &mut conn, &batch, &mut expiry).await {
            Ok(()) => {
                last_contact = Instant::now();
                shared.written.send_replace(number);
            }
            Err(e) => {
                // The reason once per outage (the transition below logs that Redis is down).
                if shared.stats.up.load(Relaxed) {
                    tracing::warn!(error = %e, "redis write failed; keeping the batch");
                } else {
                    tracing::debug!(error = %e, "redis write failed; keeping the batch");
                }
                shared.stats.errors.fetch_add(1, Relaxed);
                shared.mark_up(false);
                shared.pending.put_back(batch);
            }
        }
    }
    let (_, batch) = shared.pending.take();
    if batch.is_empty() {
        return;
    }
    let vehicles = batch.len();
    match tokio::time::timeout(FINAL_FLUSH, flush(&shared, &mut conn, &batch, &mut expiry)).await {
        Ok(Ok(())) => tracing::info!(vehicles, "redis: final flush written"),
        Ok(Err(e)) => {
            tracing::warn!(vehicles, error = %e, "redis: final flush failed; latest states since the last write are lost")
        }
        Err(_) => tracing::warn!(vehicles, "redis: final flush timed out"),
    }
}

async fn ping(conn: &mut Conn) -> bool {
    redis::cmd("PING").query_async::<String>(conn).await.is_ok()
}

/// Writes one batch as the pipelines [`plan`] cuts it into, several in flight at once.
///
/// # Errors
/// The first failed round trip; the caller puts the whole batch back.
pub async fn flush(
    shared: &Shared,
    conn: &mut Conn,
    batch: &Batch,
    expiry: &mut Expiry,
) -> RedisResult<()> {
    let fence = shared.fence.get();
    // Twice at most: a Redis restarted since the script was loaded answers NOSCRIPT once (the
    // batch is then written again whole: hash writes are idempotent, replayed track entries
    // are refused by their ids).
    for _ in 0..2 {
        let sha = match fence {
            Some(_) => Some(FENCED_WRITE_MANY.sha(conn).await?),
            None => None,
        };
        let fenced = fence
            .zip(sha.as_deref())
            .map(|(f, sha)| (f.node(), sha, f.lease_ms()));
        let pipes = plan(batch, expiry, conn.cluster(), fenced, Instant::now());
        let sent = Instant::now();
        let replies = match conn::query_all::<Vec<RedisResult<Value>>>(conn, pipes).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(f) = fence {
                    f.write_refused();
                }
                expiry.forget();
                return Err(e);
            }
        };
        let mut unknown_script = false;
        let mut all_passed = true;
        for (results, took) in replies {
            shared.stats.observe_write(took.as_secs_f64());
            shared.stats.batches.fetch_add(1, Relaxed);
            unknown_script |= no_script(&results);
            let fenced_out: usize = results
                .iter()
                .map(|r| match r {
                    Ok(Value::Array(each)) => each
                        .iter()
                        .filter(|v| matches!(v, Value::Int(FENCED_OUT)))
                        .count(),
                    _ => 0,
                })
                .sum();
            shared.stats.fenced.fetch_add(fenced_out as u64, Relaxed);
            let refused = results.iter().filter(|r| r.is_err()).count();
            all_passed &= fenced_out == 0 && refused == 0;
            if refused > 0 {
                // Expected for replayed track entries (ids not newer than the stream's top).
                shared
                    .stats
                    .command_errors
                    .fetch_add(refused as u64, Relaxed);
            }
        }
        if !unknown_script {
            if let Some(f) = fence {
                // Any refusal (a replayed track entry too, rarely) makes the next renewal
                // round go over every lease: a lost one is found there.
                if all_passed {
                    f.renewed_by_write(&mut fenced_vehicles(batch), sent);
                } else {
                    f.write_refused();
                }
            }
            break;
        }
        FENCED_WRITE_MANY.forget();
    }
    Ok(())
}

/// The vehicles of `batch` that [`plan`] writes with [`FENCED_WRITE_MANY`].
fn fenced_vehicles(batch: &Batch) -> impl Iterator<Item = &str> {
    batch
        .iter()
        .filter(|(_, e)| e.epoch.is_some() && (e.state.is_some() || e.tracker.is_some()))
        .map(|(id, _)| &**id)
}

/// Pipelines cut by where their keys live: on one node every [`COMMANDS_PER_PIPELINE`]
/// commands; on a cluster one per hash slot (cut again past [`COMMANDS_PER_PIPELINE`]), since
/// the client refuses a pipeline that spans slots.
struct Cut {
    cluster: bool,
    pipes: Vec<Pipeline>,
    /// The pipeline still being filled, per slot (one group, 0, on a single node).
    open: FastMap<u16, usize>,
}

impl Cut {
    fn new(cluster: bool) -> Cut {
        Cut {
            cluster,
            pipes: Vec::new(),
            open: FastMap::default(),
        }
    }

    /// The group of `key`: its slot on a Redis Cluster; 0 on one server, which takes a
    /// pipeline of any keys in any order.
    fn slot_of(&self, key: &str) -> u16 {
        if self.cluster { keys::slot(key) } else { 0 }
    }

    /// [`Cut::slot_of`] for a per-vehicle key.
    fn slot_of_key(&self, key: Key<'_>) -> u16 {
        if self.cluster { key.slot() } else { 0 }
    }

    /// The pipeline being filled for `group` (from [`Cut::slot_of`]): a command goes into the
    /// pipeline of its key's group.
    fn pipe(&mut self, group: u16) -> &mut Pipeline {
        let index = match self.open.get(&group) {
            Some(&i) if self.pipes[i].len() < COMMANDS_PER_PIPELINE => i,
            _ => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                self.pipes.push(pipe);
                self.open.insert(group, self.pipes.len() - 1);
                self.pipes.len() - 1
            }
        };
        &mut self.pipes[index]
    }
}

/// The commands for one batch, cut into pipelines ([`Cut`]). On a cluster vehicles go in the
/// hash-slot order of their `fleetmq:vehicle:{id}` key; the `fleetmq:geo` commands come last (on a
/// cluster in the pipelines of that key's slot). `expiry` = the state TTL and the hashes whose
/// TTL is due for an extension at `now`; `fenced` = (this node, SHA1 of [`FENCED_WRITE_MANY`],
/// lease ms) with `--cluster`.
fn plan(
    batch: &Batch,
    expiry: &mut Expiry,
    cluster: bool,
    fenced: Option<(&str, &str, u64)>,
    now: Instant,
) -> Vec<Pipeline> {
    let mut cut = Cut::new(cluster);
    let mut order: Vec<(u16, Key<'_>, &Arc<str>, &Entry)> = batch
        .iter()
        .map(|(id, e)| {
            let key = Key::vehicle(id);
            (cut.slot_of_key(key), key, id, e)
        })
        .collect();
    if cluster {
        order.sort_unstable_by_key(|(slot, ..)| *slot);
    }
    let ttl_ms = expiry.ttl_ms();
    let mut geo_add: Vec<(f64, f64, &str)> = Vec::new();
    let mut geo_gone: Vec<&str> = Vec::new();
    let mut writes = FencedWrites::default();
    for (slot, key, id, entry) in order {
        let state_json = entry.state.as_ref().map(|s| s.json.as_bytes());
        let tracker_bytes = entry.tracker.as_deref();
        let has_fields = state_json.is_some() || tracker_bytes.is_some();
        if let (true, Some((node, sha, lease_ms))) = (has_fields, fenced) {
            // Not held (lost, or Redis was down when the fix came): the owner writes the hash.
            if let Some(epoch) = entry.epoch {
                let state_json = state_json.unwrap_or_default();
                let tracker_bytes = tracker_bytes.unwrap_or_default();
                let bytes = key.byte_len() + state_json.len() + tracker_bytes.len();
                if writes.slot != Some(slot)
                    || writes.keys.len() >= FENCED_PER_CALL
                    || (writes.bytes + bytes > FENCED_BYTES_PER_CALL && !writes.keys.is_empty())
                {
                    writes.add_to(&mut cut, node, sha, (ttl_ms, lease_ms));
                    writes.slot = Some(slot);
                }
                writes.bytes += bytes;
                writes.keys.push(key);
                writes.args.push((epoch, state_json, tracker_bytes));
            }
        } else if has_fields {
            let pipe = cut.pipe(slot);
            pipe.add_command(hset(key, state_json, tracker_bytes));
            if expiry.due(id, now) {
                let mut expire =
                    redis::Cmd::with_capacity(3, "PEXPIRE".len() + key.byte_len() + 20);
                expire.arg("PEXPIRE").arg(key).arg(ttl_ms);
                pipe.add_command(expire);
            }
        }
        match entry.state.as_ref().map(|s| &*s.state) {
            // Offline (no fix for `stale_after`): out of the geo set, so GEOSEARCH finds only
            // live vehicles; the hash expires by its TTL.
            Some(s) if s.status == VehicleStatus::Offline => geo_gone.push(id),
            Some(s) if geo_ok(s) => geo_add.push((s.lon, s.lat, id)),
            _ => {}
        }
        if !entry.track.is_empty() {
            let track = Key::track(id);
            let pipe = cut.pipe(cut.slot_of_key(track));
            for point in &entry.track {
                pipe.add_command(xadd(track, point.state.ts, point.json.as_bytes()));
            }
        }
    }
    if let Some((node, sha, lease_ms)) = fenced {
        writes.add_to(&mut cut, node, sha, (ttl_ms, lease_ms));
    }
    for members in geo_add.chunks(GEO_MEMBERS_PER_COMMAND) {
        let mut geo = redis::cmd("GEOADD");
        geo.arg(keys::GEO);
        for (lon, lat, id) in members {
            geo.arg(*lon).arg(*lat).arg(*id);
        }
        cut.pipe(cut.slot_of(keys::GEO)).add_command(geo);
    }
    for members in geo_gone.chunks(GEO_MEMBERS_PER_COMMAND) {
        let slot = cut.slot_of(keys::GEO);
        cut.pipe(slot).cmd("ZREM").arg(keys::GEO).arg(members);
    }
    cut.pipes
}

/// `HSET key state <state> tracker <tracker>` (the fields given). Each command is sized up
/// front: built argument by argument it would regrow (and copy) its buffer about ten times
/// for a 2 KB tracker, which measured 6 % of the broker's instructions.
fn hset(key: Key<'_>, state: Option<&[u8]>, tracker: Option<&[u8]>) -> redis::Cmd {
    let field = |name: &str, json: Option<&[u8]>| json.map_or(0, |j| name.len() + j.len());
    let bytes = "HSET".len()
        + key.byte_len()
        + field(keys::FIELD_STATE, state)
        + field(keys::FIELD_TRACKER, tracker);
    let mut cmd = redis::Cmd::with_capacity(6, bytes);
    cmd.arg("HSET").arg(key);
    if let Some(json) = state {
        cmd.arg(keys::FIELD_STATE).arg(json);
    }
    if let Some(json) = tracker {
        cmd.arg(keys::FIELD_TRACKER).arg(json);
    }
    cmd
}

/// `XADD track MAXLEN ~ TRACK_MAXLEN {ts}-0 state <json>`, sized up front ([`hset`]). The entry
/// id is the fix's device time (at least 1: Redis refuses `0-0`).
fn xadd(track: Key<'_>, ts: i64, json: &[u8]) -> redis::Cmd {
    let mut id = itoa::Buffer::new();
    let id = id.format(ts.max(1));
    let mut cmd = redis::Cmd::with_capacity(
        8,
        "XADD MAXLEN ~ 10000 -0 state".len() + track.byte_len() + id.len() + json.len(),
    );
    cmd.arg("XADD")
        .arg(track)
        .arg("MAXLEN")
        .arg("~")
        .arg(keys::TRACK_MAXLEN);
    // `{ts}-0` as one argument, without a `format!` per point.
    let mut entry_id = [0u8; 24];
    let n = id.len();
    entry_id[..n].copy_from_slice(id.as_bytes());
    entry_id[n..n + 2].copy_from_slice(b"-0");
    cmd.arg(&entry_id[..n + 2]).arg(keys::FIELD_STATE).arg(json);
    cmd
}

/// The fenced hash writes of one hash slot, gathered into one [`FENCED_WRITE_MANY`] call.
#[derive(Default)]
struct FencedWrites<'a> {
    slot: Option<u16>,
    keys: Vec<Key<'a>>,
    /// Per key: epoch, state JSON or "", tracker snapshot or "" (borrowed from the batch).
    args: Vec<(u64, &'a [u8], &'a [u8])>,
    /// Bytes of the keys and JSON gathered.
    bytes: usize,
}

impl FencedWrites<'_> {
    /// The call for what was gathered, into its slot's pipeline; empties `self`. `ttls` =
    /// (state TTL ms, lease ms).
    fn add_to(&mut self, cut: &mut Cut, node: &str, sha: &str, ttls: (u64, u64)) {
        // Every key gathered is of the group `slot` (plan starts a call per group).
        let (false, Some(slot)) = (self.keys.is_empty(), self.slot) else {
            return;
        };
        // Sized up front: no regrowth (and no copy) of a buffer this large per call. Per
        // argument about 20 bytes more for the epoch and the protocol's length prefixes.
        let args = 6 + 4 * self.keys.len();
        let mut cmd =
            redis::Cmd::with_capacity(args, self.bytes + sha.len() + node.len() + 20 * args);
        cmd.arg("EVALSHA");
        cmd.arg(sha).arg(self.keys.len()).arg(&self.keys);
        cmd.arg(node).arg(ttls.0).arg(ttls.1);
        for (epoch, state, tracker) in &self.args {
            cmd.arg(*epoch).arg(*state).arg(*tracker);
        }
        cut.pipe(slot).add_command(cmd);
        self.keys.clear();
        self.args.clear();
        self.bytes = 0;
    }
}

/// Whether Redis accepts the position in a geo set.
fn geo_ok(s: &VehicleState) -> bool {
    s.lat.abs() <= GEO_MAX_LAT && s.lon.abs() <= 180.0
}

#[cfg(test)]
mod tests {
    use super::super::pending::StateJson;
    use super::*;
    use geo_engine::VehicleStatus;

    fn state(vehicle: &str, route: String) -> Arc<VehicleState> {
        let mut state = super::super::pending::tests::state(vehicle, 1, VehicleStatus::Moving);
        Arc::make_mut(&mut state).route = Some(route.into());
        state
    }

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Without fencing each vehicle gets `HSET` (the fields it has), `PEXPIRE` when its TTL is
    /// due for an extension (its first write here; not the next batch's, a second later), and
    /// each track point an `XADD` whose id is its device time (`0` becomes `1-0`).
    #[test]
    fn a_single_node_writes_the_hash_and_each_track_point() {
        let mut batch = Batch::default();
        let first = StateJson::new(state("bus-1", "r1".into()));
        let mut early = (*state("bus-1", "r1".into())).clone();
        early.ts = 0;
        let early = StateJson::new(Arc::new(early));
        batch.insert(
            "bus-1".into(),
            Entry {
                state: Some(first.clone()),
                tracker: Some(b"{\"t\":1}".to_vec()),
                track: vec![early.clone(), first.clone()],
                epoch: None,
            },
        );
        let t0 = Instant::now();
        let mut expiry = Expiry::new(Duration::from_secs(60), t0);
        let commands = |pipes: Vec<Pipeline>| -> Vec<Vec<Vec<u8>>> {
            pipes
                .iter()
                .flat_map(Pipeline::cmd_iter)
                .map(args)
                .collect()
        };
        let cmds = commands(plan(&batch, &mut expiry, false, None, t0));
        let next = t0 + Duration::from_secs(1);
        let again = commands(plan(&batch, &mut expiry, false, None, next));
        let b = |s: &str| s.as_bytes().to_vec();
        let xadd = |id: &str, json: &str| {
            let track = [
                "XADD",
                "fleetmq:track:bus-1",
                "MAXLEN",
                "~",
                "10000",
                id,
                "state",
            ];
            let mut args: Vec<Vec<u8>> = track.iter().map(|a| b(a)).collect();
            args.push(b(json));
            args
        };
        let ts = first.state.ts;
        let hset = [
            "HSET",
            "fleetmq:vehicle:bus-1",
            "state",
            &first.json,
            "tracker",
            "{\"t\":1}",
        ];
        assert_eq!(cmds[0], hset.map(b));
        assert_eq!(
            cmds[1],
            ["PEXPIRE", "fleetmq:vehicle:bus-1", "60000"].map(b)
        );
        assert_eq!(cmds[2], xadd("1-0", &early.json));
        assert_eq!(cmds[3], xadd(&format!("{ts}-0"), &first.json));
        assert_eq!(cmds[4][0], b("GEOADD"));
        assert_eq!(cmds.len(), 5);
        let mut without_expire = cmds.clone();
        without_expire.remove(1);
        assert_eq!(again, without_expire);
    }

    /// Fenced calls stay small enough for their buffers to be reused, and every vehicle's
    /// write is in exactly one of them, with its epoch.
    #[test]
    fn fenced_writes_are_cut_by_bytes_and_keep_every_vehicle() {
        let mut batch = Batch::default();
        for i in 0..200 {
            let id: Arc<str> = format!("bus-{i}").into();
            let entry = Entry {
                state: Some(StateJson::new(state(&id, "r".repeat(2_000)))),
                tracker: None,
                track: Vec::new(),
                epoch: Some(7),
            };
            batch.insert(id, entry);
        }
        let mut expiry = Expiry::new(Duration::from_secs(60), Instant::now());
        let fenced = Some(("node-a", "sha1", 5_000));
        let pipes = plan(&batch, &mut expiry, false, fenced, Instant::now());
        let mut written = Vec::new();
        let mut calls = 0;
        for cmd in pipes.iter().flat_map(Pipeline::cmd_iter) {
            let args = args(cmd);
            if args[0] != b"EVALSHA" {
                continue;
            }
            calls += 1;
            let n: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
            let bytes: usize = args.iter().map(Vec::len).sum();
            // The documented cap (64 KB) plus the call's own arguments, as a literal: raising
            // the constant fails here too.
            assert!(bytes <= 64 * 1024 + 1_000, "{bytes} bytes in one call");
            assert_eq!(args.len(), 3 + n + 3 + 3 * n);
            assert_eq!(&args[3 + n..3 + n + 3], [&b"node-a"[..], b"60000", b"5000"]);
            for k in 0..n {
                assert_eq!(args[3 + n + 3 + 3 * k], b"7", "epoch");
            }
            written.extend(args[3..3 + n].iter().cloned());
        }
        written.sort();
        let mut expected: Vec<Vec<u8>> = batch
            .keys()
            .map(|id| keys::vehicle(id).into_bytes())
            .collect();
        expected.sort();
        assert_eq!(written, expected);
        assert!(calls >= 200 * 2_000 / (64 * 1024), "{calls} calls");
    }
}
