//! The write-behind task: every [`FLUSH_INTERVAL`] it takes what [`Pending`] buffered and writes
//! it as pipelined batches (docs/redis.md#write-behind): per vehicle `state` and `tracker` of
//! `fleetmq:vehicle:{id}` and its TTL, each track point into `fleetmq:track:{id}` (`MAXLEN ~
//! 10000`, entry id `{ts}-0`), and `GEOADD fleetmq:geo lon lat {id} ...` (`ZREM` for a vehicle
//! gone offline). The hash writes and the track points go as script calls of many keys each
//! ([`super::calls`]): one reply per call, not one per command.
//!
//! Nothing here runs on the publish path: the ingest side only touches [`Pending`].
//!
//! # Faults
//! A failed round trip marks Redis down and puts the whole batch back (newer updates that came
//! meanwhile win). Writes are idempotent, so replaying a partly written batch is harmless: `HSET`,
//! `PEXPIRE` and `GEOADD` overwrite, and a track entry's id is the fix's device time (`{ts}-0`), so
//! a replayed point is refused as "not newer" and ignored. What Redis refused is counted in
//! `fleetmq_redis_command_errors_total`. While down the task PINGs with
//! backoff ([`MIN_BACKOFF`]..[`MAX_BACKOFF`]) and flushes everything as soon as a PING succeeds,
//! which bounds the time from recovery to "all written" by `MAX_BACKOFF` plus the flush itself.
//!
//! # Pipelines
//! Vehicles are ordered by the hash slot of their `fleetmq:vehicle:{id}` key, track points by
//! that of their stream, and the calls cut into pipelines ([`plan`]): every
//! [`COMMANDS_PER_PIPELINE`] on one node; per hash slot on a Redis Cluster, where `fleetmq:geo`
//! (one key, one slot) gets pipelines of its own; see [`super::keys`] for the key scheme.
//! Up to [`conn::PIPELINES_IN_FLIGHT`] pipelines are in flight at once.
//!
//! # Fencing (`--cluster`)
//! With a [`super::fence::Fence`] set, the hash writes are [`FENCED_WRITE_MANY`] calls instead
//! (up to [`super::calls::KEYS_PER_CALL`] vehicles of one hash slot), carrying the epoch each entry
//! was computed under; a vehicle this node does not hold gets no hash write (its track entry
//! and position still go out, keyed by the fix). Refusals are counted in
//! `fleetmq_redis_fenced_total`. A write that passes extends the vehicle's lease too; the fence
//! is told which ones did ([`super::fence::Fence::renewed_by_write`]), or that some did not
//! (`write_refused`), so the lease renewal skips only leases a write just extended.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use geo_engine::{VehicleState, VehicleStatus};
use redis::{Pipeline, RedisResult, Value};

use super::Shared;
use super::calls::{Arg, Calls, TRACK_MANY, WRITE_MANY};
use super::conn::{self, Conn};
use super::fence::{FENCED_OUT, FENCED_WRITE_MANY, no_script};
use super::keys;
use super::pending::{Batch, Entry, StateJson};
use crate::hash::FastMap;

/// Longest time an update waits in the buffer before its batch is written
/// (docs/redis.md#write-behind).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after Redis went away.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay while Redis is down.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Commands per pipeline: script calls of up to [`super::calls::KEYS_PER_CALL`] keys and
/// [`super::calls::BYTES_PER_CALL`] bytes each, so a pipeline's buffers stay around a megabyte.
pub const COMMANDS_PER_PIPELINE: usize = 16;
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
        match flush(&shared, &mut conn, &batch).await {
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
    match tokio::time::timeout(FINAL_FLUSH, flush(&shared, &mut conn, &batch)).await {
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
pub async fn flush(shared: &Shared, conn: &mut Conn, batch: &Batch) -> RedisResult<()> {
    let fence = shared.fence.get();
    // Twice at most: a Redis restarted since the scripts were loaded answers NOSCRIPT once (the
    // batch is then written again whole: hash writes are idempotent, replayed track entries
    // are refused by their ids).
    for _ in 0..2 {
        let scripts = Scripts {
            write: WRITE_MANY.sha(conn).await?,
            track: TRACK_MANY.sha(conn).await?,
            fenced: match fence {
                Some(_) => Some(FENCED_WRITE_MANY.sha(conn).await?),
                None => None,
            },
        };
        let fenced = fence.map(|f| (f.node(), f.lease_ms()));
        let (pipes, replies_of): (Vec<Pipeline>, Vec<Vec<Reply>>) =
            plan(batch, shared.ttl_ms, conn.cluster(), &scripts, fenced)
                .into_iter()
                .unzip();
        let sent = Instant::now();
        let replies = match conn::query_all::<Vec<RedisResult<Value>>>(conn, pipes).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(f) = fence {
                    f.write_refused();
                }
                return Err(e);
            }
        };
        let mut unknown_script = false;
        let mut all_passed = true;
        for ((results, took), kinds) in replies.into_iter().zip(&replies_of) {
            shared.stats.observe_write(took.as_secs_f64());
            shared.stats.batches.fetch_add(1, Relaxed);
            unknown_script |= no_script(&results);
            let (refused, fenced_out) = refusals(&results, kinds);
            shared.stats.fenced.fetch_add(fenced_out, Relaxed);
            all_passed &= fenced_out == 0 && refused == 0;
            if refused > 0 {
                // Expected for replayed track entries (ids not newer than the stream's top).
                shared.stats.command_errors.fetch_add(refused, Relaxed);
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
        WRITE_MANY.forget();
        TRACK_MANY.forget();
        FENCED_WRITE_MANY.forget();
    }
    Ok(())
}

/// What one pipeline's replies say was refused: (writes Redis refused, fenced writes refused
/// because the lease is not this node's).
fn refusals(results: &[RedisResult<Value>], kinds: &[Reply]) -> (u64, u64) {
    let (mut refused, mut fenced_out) = (0, 0);
    for (result, kind) in results.iter().zip(kinds) {
        match (result, kind) {
            (Err(_), _) => refused += 1,
            (Ok(Value::Int(n)), Reply::Refusals) => refused += u64::try_from(*n).unwrap_or(0),
            (Ok(Value::Array(each)), Reply::Fenced) => {
                fenced_out += each
                    .iter()
                    .filter(|v| matches!(v, Value::Int(FENCED_OUT)))
                    .count() as u64;
            }
            _ => {}
        }
    }
    (refused, fenced_out)
}

/// The vehicles of `batch` that [`plan`] writes with [`FENCED_WRITE_MANY`].
fn fenced_vehicles(batch: &Batch) -> impl Iterator<Item = &str> {
    batch
        .iter()
        .filter(|(_, e)| e.epoch.is_some() && (e.state.is_some() || e.tracker.is_some()))
        .map(|(id, _)| &**id)
}

/// The SHA1s of the scripts a flush calls ([`FENCED_WRITE_MANY`] only with `--cluster`).
struct Scripts {
    write: String,
    track: String,
    fenced: Option<String>,
}

/// What a command of a batch answers, to count what Redis refused.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    /// `GEOADD`, `ZREM`: an error is one refused command.
    Plain,
    /// A [`WRITE_MANY`] or [`TRACK_MANY`] call: how many of its writes were refused.
    Refusals,
    /// A [`FENCED_WRITE_MANY`] call: per key 1, or [`FENCED_OUT`].
    Fenced,
}

/// Pipelines cut by where their keys live: on one node every [`COMMANDS_PER_PIPELINE`]
/// commands; on a cluster one per hash slot (cut again past [`COMMANDS_PER_PIPELINE`]), since
/// the client refuses a pipeline that spans slots. Each pipeline comes with what each of its
/// commands answers.
struct Cut {
    cluster: bool,
    pipes: Vec<(Pipeline, Vec<Reply>)>,
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

    /// Adds `cmd`, whose keys are in hash slot `slot`.
    fn add(&mut self, slot: u16, cmd: redis::Cmd, reply: Reply) {
        let group = if self.cluster { slot } else { 0 };
        let index = match self.open.get(&group) {
            Some(&i) if self.pipes[i].0.len() < COMMANDS_PER_PIPELINE => i,
            _ => {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                self.pipes.push((pipe, Vec::new()));
                self.open.insert(group, self.pipes.len() - 1);
                self.pipes.len() - 1
            }
        };
        let (pipe, replies) = &mut self.pipes[index];
        pipe.add_command(cmd);
        replies.push(reply);
    }

    fn add_calls(&mut self, calls: Calls<'_>, reply: Reply) {
        for (slot, cmd) in calls.finish() {
            self.add(slot, cmd, reply);
        }
    }
}

/// The commands for one batch, cut into pipelines ([`Cut`]): the vehicles' hashes in
/// [`WRITE_MANY`] calls ([`FENCED_WRITE_MANY`] with `--cluster`), their track points in
/// [`TRACK_MANY`] calls, then `GEOADD` / `ZREM` of `fleetmq:geo`. Vehicles go in the hash-slot
/// order of their `fleetmq:vehicle:{id}` key, track points in that of their stream (keeping
/// each vehicle's points in time order). `fenced` = (this node, lease ms) with `--cluster`.
fn plan(
    batch: &Batch,
    ttl_ms: u64,
    cluster: bool,
    scripts: &Scripts,
    fenced: Option<(&str, u64)>,
) -> Vec<(Pipeline, Vec<Reply>)> {
    let slot_of = |key: &str| if cluster { keys::slot(key) } else { 0 };
    let mut order: Vec<(u16, String, &str, &Entry)> = batch
        .iter()
        .map(|(id, e)| {
            let key = keys::vehicle(id);
            (slot_of(&key), key, &**id, e)
        })
        .collect();
    order.sort_unstable_by_key(|(slot, ..)| *slot);
    let mut cut = Cut::new(cluster);
    let mut geo_add: Vec<(f64, f64, &str)> = Vec::new();
    let mut geo_gone: Vec<&str> = Vec::new();
    let mut hashes = Calls::new(&scripts.write, vec![Arg::Num(ttl_ms)]);
    let mut fenced_hashes = match (fenced, &scripts.fenced) {
        (Some((node, lease_ms)), Some(sha)) => Some(Calls::new(
            sha,
            vec![
                Arg::Bytes(node.as_bytes()),
                Arg::Num(ttl_ms),
                Arg::Num(lease_ms),
            ],
        )),
        _ => None,
    };
    let mut points: Vec<(u16, String, &StateJson)> = Vec::new();
    for (slot, key, id, entry) in order {
        let state_json = entry.state.as_ref().map(|s| s.json.as_bytes());
        let tracker_bytes = entry.tracker.as_deref();
        if state_json.is_some() || tracker_bytes.is_some() {
            let state = Arg::Bytes(state_json.unwrap_or_default());
            let tracker = Arg::Bytes(tracker_bytes.unwrap_or_default());
            match (&mut fenced_hashes, entry.epoch) {
                (None, _) => hashes.add(slot, key, &[state, tracker]),
                (Some(calls), Some(epoch)) => {
                    calls.add(slot, key, &[Arg::Num(epoch), state, tracker]);
                }
                // Not held (lost, or Redis was down when the fix came): the owner writes the
                // hash.
                (Some(_), None) => {}
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
            let track = keys::track(id);
            let slot = slot_of(&track);
            points.extend(entry.track.iter().map(|p| (slot, track.clone(), p)));
        }
    }
    cut.add_calls(hashes, Reply::Refusals);
    if let Some(calls) = fenced_hashes {
        cut.add_calls(calls, Reply::Fenced);
    }
    // Stable: a vehicle's points keep their time order (a stream refuses an older id).
    points.sort_by_key(|(slot, ..)| *slot);
    let mut tracks = Calls::new(&scripts.track, vec![Arg::Num(keys::TRACK_MAXLEN as u64)]);
    for (slot, key, point) in points {
        // The entry id is the fix's device time, at least 1 (Redis refuses `0-0`).
        let ts = u64::try_from(point.state.ts).unwrap_or(0).max(1);
        tracks.add(
            slot,
            key,
            &[Arg::Num(ts), Arg::Bytes(point.json.as_bytes())],
        );
    }
    cut.add_calls(tracks, Reply::Refusals);
    let geo_slot = slot_of(keys::GEO);
    for members in geo_add.chunks(GEO_MEMBERS_PER_COMMAND) {
        let mut geo = redis::cmd("GEOADD");
        geo.arg(keys::GEO);
        for (lon, lat, id) in members {
            geo.arg(*lon).arg(*lat).arg(*id);
        }
        cut.add(geo_slot, geo, Reply::Plain);
    }
    for members in geo_gone.chunks(GEO_MEMBERS_PER_COMMAND) {
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(keys::GEO).arg(members);
        cut.add(geo_slot, zrem, Reply::Plain);
    }
    cut.pipes
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
        Arc::make_mut(&mut state).route = Some(route);
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

    fn scripts(fenced: bool) -> Scripts {
        Scripts {
            write: "write-sha".into(),
            track: "track-sha".into(),
            fenced: fenced.then(|| "fenced-sha".into()),
        }
    }

    /// Every command of `pipes` with what its reply is read as.
    fn commands(pipes: &[(Pipeline, Vec<Reply>)]) -> Vec<(Vec<Vec<u8>>, Reply)> {
        pipes
            .iter()
            .flat_map(|(pipe, replies)| {
                assert_eq!(pipe.len(), replies.len());
                pipe.cmd_iter().map(args).zip(replies.iter().copied())
            })
            .collect()
    }

    /// Without fencing the vehicles' hashes go in one `WRITE_MANY` call (TTL, then per key
    /// state and tracker) and the track points in one `TRACK_MANY` call, a vehicle's points in
    /// time order with their device times (`0` becomes 1); then `GEOADD`.
    #[test]
    fn a_single_node_writes_hashes_and_track_points_in_script_calls() {
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
        batch.insert(
            "bus-2".into(),
            Entry {
                state: None,
                tracker: Some(b"T2".to_vec()),
                track: Vec::new(),
                epoch: None,
            },
        );
        let cmds = commands(&plan(&batch, 60_000, false, &scripts(false), None));
        let b = |s: &str| s.as_bytes().to_vec();
        let (write, reply) = &cmds[0];
        assert_eq!(*reply, Reply::Refusals);
        assert_eq!(
            write[..4],
            [
                b("EVALSHA"),
                b("write-sha"),
                b("2"),
                b("fleetmq:vehicle:bus-1")
            ]
            .as_slice()[..4]
        );
        // Keys in the batch's order, then the TTL and each key's two fields.
        let bus1 = write
            .iter()
            .position(|a| *a == b("fleetmq:vehicle:bus-1"))
            .unwrap();
        let (k1, k2) = if bus1 == 3 { (0, 1) } else { (1, 0) };
        assert_eq!(write[5], b("60000"));
        assert_eq!(write[6 + 2 * k1], b(&first.json));
        assert_eq!(write[7 + 2 * k1], b("{\"t\":1}"));
        assert_eq!(write[6 + 2 * k2], b(""));
        assert_eq!(write[7 + 2 * k2], b("T2"));
        let ts = first.state.ts;
        let track = [
            "EVALSHA",
            "track-sha",
            "2",
            "fleetmq:track:bus-1",
            "fleetmq:track:bus-1",
            "10000",
            "1",
            &early.json,
            &ts.to_string(),
            &first.json,
        ];
        assert_eq!(cmds[1], (track.map(b).to_vec(), Reply::Refusals));
        assert_eq!(cmds[2].0[0], b("GEOADD"));
        assert_eq!(cmds[2].1, Reply::Plain);
        assert_eq!(cmds.len(), 3);
    }

    /// On a Redis Cluster every call holds keys of one hash slot only, and every vehicle's
    /// hash and track point is in exactly one call.
    #[test]
    fn cluster_calls_keep_to_one_slot_and_keep_every_vehicle() {
        let mut batch = Batch::default();
        for i in 0..300 {
            let id: Arc<str> = format!("bus-{i}").into();
            let json = StateJson::new(state(&id, "r".into()));
            let entry = Entry {
                state: Some(json.clone()),
                tracker: None,
                track: vec![json],
                epoch: None,
            };
            batch.insert(id, entry);
        }
        let pipes = plan(&batch, 60_000, true, &scripts(false), None);
        let mut hashes = Vec::new();
        let mut tracks = Vec::new();
        for (pipe, _) in &pipes {
            let mut slots = std::collections::HashSet::new();
            for cmd in pipe.cmd_iter() {
                let args = args(cmd);
                if args[0] != b"EVALSHA" {
                    slots.insert(keys::slot(keys::GEO));
                    continue;
                }
                let n: usize = std::str::from_utf8(&args[2]).unwrap().parse().unwrap();
                for key in &args[3..3 + n] {
                    slots.insert(keys::slot(std::str::from_utf8(key).unwrap()));
                }
                match &args[1][..] {
                    b"write-sha" => hashes.extend(args[3..3 + n].iter().cloned()),
                    b"track-sha" => tracks.extend(args[3..3 + n].iter().cloned()),
                    other => panic!("unexpected script {other:?}"),
                }
            }
            assert_eq!(slots.len(), 1, "a pipeline spans slots");
        }
        hashes.sort();
        tracks.sort();
        let mut expected: Vec<Vec<u8>> = batch
            .keys()
            .map(|id| keys::vehicle(id).into_bytes())
            .collect();
        expected.sort();
        assert_eq!(hashes, expected);
        let mut expected: Vec<Vec<u8>> = batch
            .keys()
            .map(|id| keys::track(id).into_bytes())
            .collect();
        expected.sort();
        assert_eq!(tracks, expected);
    }

    /// Fenced calls stay small enough for their buffers to be reused, and every held vehicle's
    /// write is in exactly one of them, with its epoch; a vehicle not held gets no hash write.
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
        let not_held = Entry {
            state: Some(StateJson::new(state("lost", "r".into()))),
            tracker: None,
            track: Vec::new(),
            epoch: None,
        };
        batch.insert("lost".into(), not_held);
        let pipes = plan(
            &batch,
            60_000,
            false,
            &scripts(true),
            Some(("node-a", 5_000)),
        );
        let mut written = Vec::new();
        let mut calls = 0;
        for (cmd, reply) in commands(&pipes) {
            if cmd[0] != b"EVALSHA" {
                continue;
            }
            assert_eq!(cmd[1], b"fenced-sha");
            assert_eq!(reply, Reply::Fenced);
            calls += 1;
            let n: usize = std::str::from_utf8(&cmd[2]).unwrap().parse().unwrap();
            let bytes: usize = cmd.iter().map(Vec::len).sum();
            // The documented cap (64 KB) plus the call's own arguments, as a literal: raising
            // the constant fails here too.
            assert!(bytes <= 64 * 1024 + 1_000, "{bytes} bytes in one call");
            assert_eq!(cmd.len(), 3 + n + 3 + 3 * n);
            assert_eq!(&cmd[3 + n..3 + n + 3], [&b"node-a"[..], b"60000", b"5000"]);
            for k in 0..n {
                assert_eq!(cmd[3 + n + 3 + 3 * k], b"7", "epoch");
            }
            written.extend(cmd[3..3 + n].iter().cloned());
        }
        written.sort();
        let mut expected: Vec<Vec<u8>> = batch
            .keys()
            .filter(|id| &***id != "lost")
            .map(|id| keys::vehicle(id).into_bytes())
            .collect();
        expected.sort();
        assert_eq!(written, expected);
        assert!(calls >= 200 * 2_000 / (64 * 1024), "{calls} calls");
    }

    /// Refusals are read by what each command answers: a script's count, a fenced call's
    /// per-key -1, a plain command's error; a `GEOADD`'s count of members added is not one.
    #[test]
    fn refusals_are_read_by_reply_kind() {
        let err = || -> RedisResult<Value> { Err((redis::ErrorKind::Client, "refused").into()) };
        let results = vec![
            Ok(Value::Int(2)),
            Ok(Value::Int(5)),
            Ok(Value::Array(vec![
                Value::Int(1),
                Value::Int(FENCED_OUT),
                Value::Int(FENCED_OUT),
            ])),
            err(),
            err(),
        ];
        let kinds = [
            Reply::Refusals,
            Reply::Plain,
            Reply::Fenced,
            Reply::Plain,
            Reply::Refusals,
        ];
        assert_eq!(refusals(&results, &kinds), (4, 2));
    }
}
