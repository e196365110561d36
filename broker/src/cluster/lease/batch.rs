//! First acquisitions of many vehicles in one script call. When thousands of drivers connect at
//! once (a node starting, the balancer moving a dead node's third of the fleet), each one's first
//! fix waits for its lease before it is processed, and one [`ACQUIRE`] call per vehicle queued
//! thousands of script calls in Redis: the first seconds of a 10,000-driver cluster run were
//! its slowest (bench/RESULTS.md, session 14).
//!
//! Requests go to one task, which takes every request waiting when it is free and sends them as
//! one call per hash slot (one in all without Redis Cluster), at most [`PER_CALL`] keys each,
//! pipelined. Nothing waits for company: a lone request is sent at once; requests pile up only
//! while a call is in flight, and the next call takes them together. Only the first try of an
//! acquisition comes here; waiting out another node's lease and taking over from a dead one stay
//! per vehicle in [`Leases::acquire`](super::Leases::acquire).
//!
//! # Bounds
//! The queue holds at most [`QUEUE`] requests; a connection sending past it waits (each
//! connection awaits its own acquisition, so a full queue slows new vehicles' first fixes, not
//! the vehicles this node holds). A call takes at most [`MAX_TAKEN`] requests.

use std::collections::BTreeMap;

use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::Leases;
use super::scripts::{ACQUIRE, Acquired};
use crate::persist::keys;

/// Keys per script call: the replies carry each vehicle's stored tracker and state (~1.2 KB),
/// so a call's reply stays well under the allocator's mmap threshold.
pub(super) const PER_CALL: usize = 64;
/// Requests waiting for the task.
const QUEUE: usize = 4096;
/// Requests one round takes.
const MAX_TAKEN: usize = 1024;

/// One first try at a vehicle's lease.
pub(super) struct Request {
    /// `fleetmq:vehicle:{id}`.
    pub key: String,
    /// The script's answer; `None` when Redis did not answer or the reply was not understood
    /// (the caller then processes without a lease, as for a failed single call).
    pub reply: oneshot::Sender<Option<Acquired>>,
}

/// The requests' way into the task.
pub(super) type Queue = mpsc::Sender<Request>;

/// A queue and its receiving end, for [`run`].
pub(super) fn queue() -> (Queue, mpsc::Receiver<Request>) {
    mpsc::channel(QUEUE)
}

/// Asks the task for `key`'s lease; `None` as in [`Request::reply`], and when the task is gone.
pub(super) async fn acquire(queue: &Queue, key: String) -> Option<Acquired> {
    let (reply, answer) = oneshot::channel();
    queue.send(Request { key, reply }).await.ok()?;
    answer.await.ok().flatten()
}

/// Answers requests until the leases stop.
pub(super) async fn run(leases: std::sync::Arc<Leases>, mut requests: mpsc::Receiver<Request>) {
    let mut taken = Vec::new();
    loop {
        let first = tokio::select! {
            r = requests.recv() => r,
            () = leases.stop.cancelled() => return,
        };
        let Some(first) = first else { return };
        taken.push(first);
        while taken.len() < MAX_TAKEN {
            match requests.try_recv() {
                Ok(r) => taken.push(r),
                Err(_) => break,
            }
        }
        leases.stats.acquire_calls.fetch_add(
            taken.len().div_ceil(PER_CALL) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        call(&leases, std::mem::take(&mut taken)).await;
    }
}

/// One round: `taken` grouped by hash slot, [`PER_CALL`] per script call, pipelined; every
/// request answered (dropping a request's sender answers `None`).
pub(super) async fn call(leases: &Leases, taken: Vec<Request>) {
    let cluster = leases.conn.cluster();
    let mut slots: BTreeMap<u16, Vec<Request>> = BTreeMap::new();
    for r in taken {
        let slot = if cluster { keys::slot(&r.key) } else { 0 };
        slots.entry(slot).or_default().push(r);
    }
    let mut calls: Vec<Vec<Request>> = Vec::new();
    for mut group in slots.into_values() {
        while group.len() > PER_CALL {
            let rest = group.split_off(PER_CALL);
            calls.push(std::mem::replace(&mut group, rest));
        }
        calls.push(group);
    }
    let lease_ms = super::LEASE_TTL.as_millis() as u64;
    let results = ACQUIRE
        .query_each(&leases.conn, super::PER_PIPELINE, |sha| {
            calls
                .iter()
                .map(|call| {
                    let mut cmd = redis::cmd("EVALSHA");
                    cmd.arg(sha).arg(call.len());
                    for r in call {
                        cmd.arg(&r.key);
                    }
                    cmd.arg(&*leases.node)
                        .arg(lease_ms)
                        .arg(leases.state_ttl_ms)
                        .arg("");
                    (call[0].key.clone(), cmd)
                })
                .collect()
        })
        .await;
    let results = match results {
        Ok(results) => results,
        Err(e) => {
            // Every request's sender is dropped with `calls`: each answer is `None`.
            tracing::debug!(error = %e, "lease: redis unreachable, processing without a lease");
            return;
        }
    };
    for (call, result) in calls.into_iter().zip(results) {
        let answers = match result {
            Ok(reply) => Acquired::read_each(&reply, call.len()),
            Err(e) => {
                tracing::debug!(error = %e, "lease: acquire call failed");
                Acquired::read_each(&Value::Nil, call.len())
            }
        };
        for (r, answer) in call.into_iter().zip(answers) {
            // The requester may have gone (its connection closed): nothing to tell.
            let _ = r.reply.send(answer);
        }
    }
}
