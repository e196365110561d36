//! Asking the holder of a vehicle to release it, over Redis pub/sub: each node subscribes to
//! its own channel `fleetmq:lease:release:{node}`; a node that wants a vehicle publishes the
//! vehicle id there. The holder flushes the tracker and releases the lease (one script), and
//! the asking node's next acquire attempt (every [`POLL`]) gets it with the flushed tracker.
//!
//! `PUBLISH` answers how many subscribers got the message: 0 means the holder has no
//! connection to Redis any more (its process died, and the kernel closed its sockets), so the
//! asking node takes the vehicle over at once instead of waiting for the lease to run out.
//!
//! Requests are handled one after the other on one task; ids longer than a vehicle id may be
//! are ignored.

use std::sync::Arc;
use std::time::Duration;

use crate::persist::Conn;
use redis::RedisResult;

use super::Leases;
use crate::persist::fence::FENCED_WRITE;
use crate::persist::keys;

/// How often an acquire polls the lease while its holder releases.
pub const POLL: Duration = Duration::from_millis(20);
/// A holder that got the request but has not released is asked again after this long.
pub const ASK_AGAIN: Duration = Duration::from_secs(1);
/// Longest vehicle id (as HTTP ingest allows).
const MAX_VEHICLE_ID: usize = 128;

/// The release channel of `node`.
pub fn channel(node: &str) -> String {
    format!("{}{node}", keys::LEASE_RELEASE_CHANNEL)
}

/// Asks `owner` to release `vehicle`; the number of nodes that heard it (0 or 1).
///
/// # Errors
/// Redis unreachable.
pub async fn ask(conn: &mut Conn, owner: &str, vehicle: &str) -> RedisResult<i64> {
    // On a Redis Cluster a plain PUBLISH answers only for the node it reached; a sharded
    // channel lives on one master, whose SPUBLISH counts every subscriber.
    let publish = if conn.cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    redis::cmd(publish)
        .arg(channel(owner))
        .arg(vehicle)
        .query_async(conn)
        .await
}

/// A request for a vehicle this process does not hold, whose lease Redis still gives to this
/// node id: a previous run of this node (killed, restarted within the lease's 5 s) took it.
/// It is released under its stored epoch, so the asking node need not wait for it to run out.
async fn release_stale(leases: &Leases, vehicle: &str) {
    let mut conn = leases.conn.clone();
    let key = keys::vehicle(vehicle);
    let stored: RedisResult<(Option<String>, Option<u64>)> = redis::cmd("HMGET")
        .arg(&key)
        .arg(keys::FIELD_LEASE_OWNER)
        .arg(keys::FIELD_LEASE_EPOCH)
        .query_async(&mut conn)
        .await;
    let Ok((Some(owner), Some(epoch))) = stored else {
        return;
    };
    if owner != *leases.node {
        return;
    }
    let released: RedisResult<i64> = FENCED_WRITE
        .call(&mut conn, &key, |c| {
            c.arg(&*leases.node)
                .arg(epoch)
                .arg(leases.state_ttl_ms)
                .arg("")
                .arg("")
                .arg("release");
        })
        .await;
    if let Ok(1) = released {
        tracing::info!(
            vehicle,
            "lease: released a lease left by a previous run of this node"
        );
    }
}

/// Answers release requests until [`Leases::close`]. The subscription (`persist::pubsub`:
/// `SUBSCRIBE` on one Redis, `SSUBSCRIBE` on a cluster) is made again by the transport after a
/// lost connection or a moved slot.
pub async fn listen(leases: Arc<Leases>) {
    let mut messages = match leases.pubsub.subscribe(vec![channel(&leases.node)]) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(error = %e, "lease: cannot subscribe to the release channel");
            return;
        }
    };
    loop {
        let msg = tokio::select! {
            m = messages.recv() => m,
            _ = leases.stop.cancelled() => return,
        };
        let Some((_, vehicle)) = msg else { return };
        if vehicle.len() > MAX_VEHICLE_ID {
            continue;
        }
        if let Ok(vehicle) = std::str::from_utf8(&vehicle) {
            tracing::debug!(vehicle, "lease: release requested by another node");
            if leases.holds(vehicle) {
                leases.release(std::iter::once(vehicle)).await;
            } else {
                release_stale(&leases, vehicle).await;
            }
        }
    }
}
