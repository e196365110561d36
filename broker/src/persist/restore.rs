//! Restore on start: every `fleetmq:vehicle:*` hash is read back (`SCAN` in pages of
//! [`SCAN_COUNT`] on every master of a cluster, pipelined `HMGET tracker state` per page, cut per
//! hash slot on a cluster) into geo-engine trackers, with
//! their filter state, route match and last fix, so the first fix after a restart continues the
//! track instead of looking like a teleport or a duplicate.

use std::collections::{BTreeMap, HashSet};

use geo_engine::{Tracker, VehicleStatus};
use redis::RedisResult;

use super::conn::{self, Conn};
use super::keys;

/// Keys asked for per SCAN step (a hint to Redis) and so per pipeline.
const SCAN_COUNT: usize = 1000;

/// What a restore found.
#[derive(Debug, Default)]
pub struct Restored {
    /// Trackers to put back, one per vehicle.
    pub trackers: Vec<Tracker>,
    /// Hashes without a readable tracker (written by another version, or damaged): skipped.
    pub skipped: usize,
}

/// Pages of raw rows in flight between the reading loop and the parser.
const PAGES_IN_FLIGHT: usize = 4;

/// The `tracker` and `state` fields of one hash, as stored.
type Fields = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One page: `(key, tracker snapshot, state JSON)`.
type Page = Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// Reads every vehicle hash, at most `max` vehicles. Reading the next page overlaps with parsing
/// the previous one (on a blocking thread), so the restore is bound by the slower of the two.
///
/// # Errors
/// A failed round trip (Redis down or lost during the restore).
pub async fn load(conn: &mut Conn, max: usize, now_ms: i64) -> RedisResult<Restored> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Page>(PAGES_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        let mut out = Restored::default();
        while let Some(page) = rx.blocking_recv() {
            for (key, tracker, state) in page {
                match rebuild(&key, tracker.as_deref(), state.as_deref(), now_ms) {
                    Some(_) if out.trackers.len() >= max => {
                        tracing::warn!(
                            max,
                            "redis restore: more vehicles than the bound; the rest are not restored"
                        );
                        return out;
                    }
                    Some(t) => out.trackers.push(t),
                    None => out.skipped += 1,
                }
            }
        }
        out
    });
    let read = read_pages(conn, tx).await;
    let restored = parser.await.unwrap_or_default();
    read.map(|()| restored)
}

/// SCAN + pipelined HMGET, page by page and master by master, into `tx` (stops early when the
/// parser is done).
async fn read_pages(conn: &mut Conn, tx: tokio::sync::mpsc::Sender<Page>) -> RedisResult<()> {
    let mut seen: HashSet<String> = HashSet::new();
    for node in conn.masters().await? {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = conn
                .scan(&node, cursor, keys::VEHICLE_PATTERN, SCAN_COUNT)
                .await?;
            // SCAN may return a key more than once.
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            if !keys.is_empty() {
                let page = read_page(conn, keys).await?;
                if tx.send(page).await.is_err() {
                    return Ok(());
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(())
}

/// `HMGET tracker state` of every key, pipelined: one pipeline on a single node, one per hash
/// slot on a cluster (a SCAN page of one master spans many slots).
async fn read_page(conn: &Conn, keys: Vec<String>) -> RedisResult<Page> {
    let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for k in keys {
        let group = if conn.cluster() { keys::slot(&k) } else { 0 };
        groups.entry(group).or_default().push(k);
    }
    let pipes = groups
        .values()
        .map(|keys| {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("HMGET")
                    .arg(k)
                    .arg(keys::FIELD_TRACKER)
                    .arg(keys::FIELD_STATE);
            }
            pipe
        })
        .collect();
    let replies = conn::query_all::<Vec<Fields>>(conn, pipes).await?;
    Ok(groups
        .into_values()
        .zip(replies)
        .flat_map(|(keys, (rows, _))| keys.into_iter().zip(rows))
        .map(|(k, (t, s))| (k, t, s))
        .collect())
}

/// The fields of a stored state the restore looks at.
#[derive(serde::Deserialize)]
struct StateHead {
    ts: i64,
    status: VehicleStatus,
}

/// One vehicle's tracker from its hash fields. A vehicle whose last written state is offline
/// (written without a tracker snapshot) is marked offline again.
pub fn rebuild(
    key: &str,
    tracker: Option<&[u8]>,
    state: Option<&[u8]>,
    now_ms: i64,
) -> Option<Tracker> {
    let id = keys::vehicle_id(key)?;
    let mut t = Tracker::read_snapshot(tracker?).ok()?;
    if t.vehicle() != id {
        return None;
    }
    let last_fix = t.state().map_or(i64::MIN, |s| s.ts);
    let offline = state
        .and_then(|s| serde_json::from_slice::<StateHead>(s).ok())
        .is_some_and(|s| s.status == VehicleStatus::Offline && s.ts >= last_fix);
    if offline {
        let _ = t.mark_offline(now_ms);
    }
    Some(t)
}
