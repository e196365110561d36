//! Restore on start: every `fleetmq:vehicle:*` hash is read back (`SCAN` in pages of
//! [`SCAN_COUNT`], one pipelined `HMGET tracker state` per page) into geo-engine trackers, with
//! their filter state, route match and last fix, so the first fix after a restart continues the
//! track instead of looking like a teleport or a duplicate.

use std::collections::HashSet;

use geo_engine::{Tracker, VehicleStatus};
use redis::RedisResult;
use redis::aio::ConnectionManager;

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

/// One page: `(key, tracker JSON, state JSON)`.
type Page = Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// Reads every vehicle hash, at most `max` vehicles. Reading the next page overlaps with parsing
/// the previous one (on a blocking thread), so the restore is bound by the slower of the two.
///
/// # Errors
/// A failed round trip (Redis down or lost during the restore).
pub async fn load(conn: &mut ConnectionManager, max: usize, now_ms: i64) -> RedisResult<Restored> {
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

/// SCAN + pipelined HMGET, page by page, into `tx` (stops early when the parser is done).
async fn read_pages(
    conn: &mut ConnectionManager,
    tx: tokio::sync::mpsc::Sender<Page>,
) -> RedisResult<()> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys::VEHICLE_PATTERN)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        // SCAN may return a key more than once.
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HMGET")
                    .arg(k)
                    .arg(keys::FIELD_TRACKER)
                    .arg(keys::FIELD_STATE);
            }
            let rows: Vec<Fields> = pipe.query_async(conn).await?;
            let page = keys
                .into_iter()
                .zip(rows)
                .map(|(k, (t, s))| (k, t, s))
                .collect();
            if tx.send(page).await.is_err() {
                return Ok(());
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
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
    let mut t: Tracker = serde_json::from_slice(tracker?).ok()?;
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
