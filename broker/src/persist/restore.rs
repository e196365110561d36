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

/// Reads every vehicle hash, at most `max` vehicles.
///
/// # Errors
/// A failed round trip (Redis down or lost during the restore).
pub async fn load(conn: &mut ConnectionManager, max: usize, now_ms: i64) -> RedisResult<Restored> {
    let mut out = Restored::default();
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
            let rows: Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> = pipe.query_async(conn).await?;
            for (key, (tracker, state)) in keys.iter().zip(rows) {
                match rebuild(key, tracker.as_deref(), state.as_deref(), now_ms) {
                    Some(t) if out.trackers.len() < max => out.trackers.push(t),
                    Some(_) => {
                        tracing::warn!(
                            max,
                            "redis restore: more vehicles than the buffer bound; the rest are not restored"
                        );
                        return Ok(out);
                    }
                    None => out.skipped += 1,
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(out);
        }
    }
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
        .and_then(|s| serde_json::from_slice::<geo_engine::VehicleState>(s).ok())
        .is_some_and(|s| s.status == VehicleStatus::Offline && s.ts >= last_fix);
    if offline {
        let _ = t.mark_offline(now_ms);
    }
    Some(t)
}
