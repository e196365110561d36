//! Vehicles left without a node: when a node dies, its drivers usually reconnect elsewhere and
//! the lease moves with them; a driver that never comes back leaves a vehicle whose tracker no
//! node holds, so no node marks it `offline` after `stale_after`, and every map would show it
//! live forever. This module owns that case.
//!
//! Every [`CHECK_EVERY`], one node (the live node with the smallest id, so at most one adopts
//! at a time while membership agrees) looks at its view of the fleet for vehicles not offline
//! whose latest state is older than `stale_after` + [`GRACE`], which is past the moment a living
//! holder would have marked them offline itself. Of those, the ones whose lease names no live
//! node are acquired (`Leases::acquire`: the tracker comes from Redis), and from there on the
//! node's ordinary offline sweep marks them offline (an `offline` event and state on every
//! node) and the idle release gives their leases up again. A vehicle whose lease names a live
//! node is left to that node: this never moves a vehicle away from a node that is running. A
//! vehicle is tried at most once per [`RETRY_AFTER`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::Membership;
use super::lease::{IDLE_RELEASE, LEASE_TTL, Leases};
use crate::persist::{Conn, keys};

/// How often the adopting node looks for vehicles left without a node.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long past `stale_after` a vehicle must be silent before it counts as left: longer than
/// a living holder needs to mark it offline and let its lease lapse.
pub const GRACE: Duration = Duration::from_secs(LEASE_TTL.as_secs() + IDLE_RELEASE.as_secs());
/// Vehicles adopted per round at most, so a round stays short; the rest come next round.
const PER_ROUND: usize = 1000;
/// How long an adopted vehicle is not tried again. One whose tracker was offline already
/// (its `offline` went out but this node missed it, e.g. on the bus during a Redis outage)
/// stays "live" in this node's view until its next state; without this pause it would be
/// adopted and released again every round, crowding out real orphans.
const RETRY_AFTER: Duration = Duration::from_secs(600);

/// Vehicles not offline whose latest state came in longer ago than the given duration (the
/// node's view of the whole fleet).
pub type Silent = Box<dyn Fn(Duration) -> Vec<Arc<str>> + Send + Sync>;

/// Adopts vehicles left without a node until `stop`.
pub async fn run(
    membership: Arc<Membership>,
    leases: Arc<Leases>,
    conn: Conn,
    silent: Silent,
    stale_after: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Vehicles tried and when; at most PER_ROUND × rounds in RETRY_AFTER entries.
    let mut tried: HashMap<Arc<str>, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let live: HashSet<String> = membership.nodes().into_iter().map(|n| n.id).collect();
        if !membership.is_up() || !is_adopter(membership.me(), &live) {
            continue;
        }
        let now = Instant::now();
        tried.retain(|_, at| now.duration_since(*at) < RETRY_AFTER);
        let candidates: Vec<Arc<str>> = silent(stale_after + GRACE)
            .into_iter()
            .filter(|v| !leases.is_held(v) && !tried.contains_key(v))
            .take(PER_ROUND)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let owners = match owners(&conn, &candidates).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "orphans: lease owners unreadable; next round");
                continue;
            }
        };
        for (vehicle, owner) in candidates.iter().zip(owners) {
            if owner.is_some_and(|o| live.contains(&o)) || stop.is_cancelled() {
                continue;
            }
            tried.insert(vehicle.clone(), now);
            match leases.acquire(vehicle).await {
                // `acquire` also succeeds without a lease while Redis is unreachable: only a
                // held lease is an adoption.
                Ok(()) if leases.is_held(vehicle) => {
                    tracing::info!(%vehicle, "orphans: adopted a vehicle left without a node")
                }
                Ok(()) => tracing::debug!(%vehicle, "orphans: Redis away, not adopted"),
                Err(e) => tracing::debug!(%vehicle, error = %e, "orphans: not adopted"),
            }
        }
    }
}

/// Whether `me` adopts: the smallest id among the live nodes.
fn is_adopter(me: &str, live: &HashSet<String>) -> bool {
    live.iter().all(|id| id.as_str() >= me)
}

/// The lease owner named in each vehicle's hash (`None`: no lease, or unreadable).
async fn owners(conn: &Conn, vehicles: &[Arc<str>]) -> redis::RedisResult<Vec<Option<String>>> {
    let cmds = vehicles
        .iter()
        .map(|v| {
            let key = keys::vehicle(v);
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&key).arg(keys::FIELD_LEASE_OWNER);
            (key, cmd)
        })
        .collect();
    let replies = crate::persist::conn::query_each(conn, cmds, 500).await?;
    Ok(replies
        .into_iter()
        .map(|r| match r {
            Ok(Value::BulkString(b)) => String::from_utf8(b).ok(),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::is_adopter;

    #[test]
    fn the_smallest_live_id_adopts() {
        let live = ["b", "a", "c"].map(String::from).into_iter().collect();
        assert!(is_adopter("a", &live));
        assert!(!is_adopter("b", &live));
        assert!(!is_adopter("c", &live));
    }
}
