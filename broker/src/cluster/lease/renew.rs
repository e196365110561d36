//! Every [`RENEW_EVERY`]: renews every held lease that no write extended within
//! [`RENEWED_BY_WRITE`] (all of them after a refused write), [`PER_PIPELINE`] per script call, drops
//! the ones another node took, and releases the ones idle past `stale_after` + `IDLE_RELEASE`
//! (an HTTP or OsmAnd device has no connection whose end would release them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use redis::{RedisResult, Value};

use super::scripts::RENEW;
use super::{LEASE_TTL, Leases, NEVER, PER_PIPELINE, RENEW_EVERY, RENEWED_BY_WRITE};
use crate::persist::keys;

/// Runs until [`Leases::close`].
pub async fn run(leases: Arc<Leases>) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = leases.stop.cancelled() => return,
        }
        if leases.closing.is_cancelled() {
            continue;
        }
        if let Err(e) = renew(&leases).await {
            // Redis unreachable: the leases are kept (nobody can take them meanwhile) and
            // renewed, or found lost, once it answers; that round skips none.
            leases.renew_all.store(true, Relaxed);
            tracing::debug!(error = %e, "lease: renewal failed");
        }
        release_idle(&leases).await;
    }
}

/// One round of renewals: one [`RENEW`] call per [`PER_PIPELINE`] leases of one hash slot (of
/// one server without Redis Cluster), pipelined.
pub(super) async fn renew(leases: &Leases) -> RedisResult<()> {
    let cluster = leases.conn.cluster();
    let mut groups: BTreeMap<u16, Vec<(String, Arc<str>, u64)>> = BTreeMap::new();
    // A lease a passing write extended lately needs no renewal, unless a write was refused
    // since the last round (the loss of some lease shows only in a renewal's reply).
    let skip_written = !leases.renew_all.swap(false, Relaxed);
    let now = leases.now();
    let recent = u64::try_from(RENEWED_BY_WRITE.as_millis()).unwrap_or(u64::MAX);
    let mut skipped = 0;
    for e in leases.held.iter() {
        let written = e.value().written.load(Relaxed);
        if skip_written && written != NEVER && now.saturating_sub(written) < recent {
            skipped += 1;
            continue;
        }
        let key = keys::vehicle(e.key());
        let slot = if cluster { keys::slot(&key) } else { 0 };
        groups
            .entry(slot)
            .or_default()
            .push((key, e.key().clone(), e.value().epoch));
    }
    leases.stats.renew_skipped.fetch_add(skipped, Relaxed);
    let calls: Vec<&[(String, Arc<str>, u64)]> = groups
        .values()
        .flat_map(|g| g.chunks(PER_PIPELINE))
        .collect();
    if calls.is_empty() {
        return Ok(());
    }
    let results = RENEW
        .query_each(&leases.conn, PER_PIPELINE, |sha| {
            calls
                .iter()
                .map(|chunk| {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(sha).arg(chunk.len());
                    for (key, _, _) in *chunk {
                        cmd.arg(key);
                    }
                    cmd.arg(&*leases.node).arg(LEASE_TTL.as_millis() as u64);
                    for (_, _, epoch) in *chunk {
                        cmd.arg(*epoch);
                    }
                    (chunk[0].0.clone(), cmd)
                })
                .collect()
        })
        .await?;
    for (chunk, r) in calls.iter().zip(results) {
        let Ok(Value::Array(replies)) = r else {
            continue;
        };
        for ((_, vehicle, epoch), reply) in chunk.iter().zip(replies) {
            if matches!(reply, Value::Int(0)) {
                leases.lost(vehicle, *epoch);
            }
        }
    }
    Ok(())
}

/// Releases the leases of vehicles without a fix for `stale_after` + `IDLE_RELEASE`.
async fn release_idle(leases: &Leases) {
    let now = leases.now();
    let idle_ms = u64::try_from(leases.idle.as_millis()).unwrap_or(u64::MAX);
    let idle: Vec<Arc<str>> = leases
        .held
        .iter()
        .filter(|e| now.saturating_sub(e.value().last_used.load(Relaxed)) >= idle_ms)
        .map(|e| e.key().clone())
        .collect();
    if !idle.is_empty() {
        tracing::debug!(vehicles = idle.len(), "lease: releasing idle vehicles");
        leases.release(idle.iter().map(|v| &**v)).await;
    }
}
