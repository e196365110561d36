//! Every [`RENEW_EVERY`]: renews every held lease in pipelined batches of [`PER_PIPELINE`], drops
//! the ones another node took, and releases the ones idle past `stale_after` + `IDLE_RELEASE`
//! (an HTTP or OsmAnd device has no connection whose end would release them).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use redis::{RedisResult, Value};

use super::scripts::RENEW;
use super::{LEASE_TTL, Leases, PER_PIPELINE, RENEW_EVERY};
use crate::persist::conn::query_each;
use crate::persist::fence::no_script;
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
            // renewed, or found lost, once it answers.
            tracing::debug!(error = %e, "lease: renewal failed");
        }
        release_idle(&leases).await;
    }
}

/// One round of renewals.
pub(super) async fn renew(leases: &Leases) -> RedisResult<()> {
    let held: Vec<(Arc<str>, u64)> = leases
        .held
        .iter()
        .map(|e| (e.key().clone(), e.value().epoch))
        .collect();
    let mut conn = leases.conn.clone();
    for chunk in held.chunks(PER_PIPELINE) {
        for _ in 0..2 {
            let sha = RENEW.sha(&mut conn).await?;
            let cmds = chunk
                .iter()
                .map(|(vehicle, epoch)| {
                    let key = keys::vehicle(vehicle);
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(&sha)
                        .arg(1)
                        .arg(&key)
                        .arg(&*leases.node)
                        .arg(*epoch)
                        .arg(LEASE_TTL.as_millis() as u64);
                    (key, cmd)
                })
                .collect();
            // Per hash slot on a Redis Cluster (a pipeline must stay within one).
            let results = query_each(&conn, cmds, PER_PIPELINE).await?;
            if no_script(&results) {
                RENEW.forget();
                continue;
            }
            for ((vehicle, epoch), r) in chunk.iter().zip(results) {
                if matches!(r, Ok(Value::Int(0))) {
                    leases.lost(vehicle, *epoch);
                }
            }
            break;
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
