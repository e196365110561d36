//! Membership: which nodes are alive (docs/redis.md#keys, `GET /api/v1/cluster`).
//!
//! Every [`HEARTBEAT`] a node writes its hash `fleetmq:node:{id}` (advertised addresses,
//! `started_at`, `last_seen`, `connections`, `vehicles`, `incarnation`) with a `PEXPIRE` of
//! [`DEAD_AFTER`], and its score `last_seen` in the sorted set `fleetmq:nodes`; the same round
//! trip reads the others back. A node silent for [`DEAD_AFTER`] is dead: its hash has expired,
//! it is no longer listed, and anything it held is free.
//!
//! A node that was silent that long (Redis away, the process paused) was declared dead by the
//! others. When it gets through again it does not pick up where it left off: it starts a new
//! incarnation (counted in `incarnation`, watched through [`Membership::incarnations`]) so that
//! whatever it held before (leases, part 2's sessions) is taken afresh, never resurrected.
//!
//! `last_seen` is the node's own clock: the nodes' clocks must agree within a second (NTP).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::persist::{Conn, Target, conn};
use fleetmq_bridge::ClusterNode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ClusterError;
use crate::ingest::now_ms;
use crate::metrics::Metrics;

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);
/// The sorted set listing the nodes, scored by `last_seen` (Unix ms).
pub const NODES_KEY: &str = "fleetmq:nodes";
/// Nodes listed at most (a bound on what one read brings back).
const MAX_NODES: isize = 1024;

/// The hash of node `id`.
pub fn node_key(id: &str) -> String {
    format!("fleetmq:node:{id}")
}

/// What this node advertises.
#[derive(Debug, Clone)]
pub struct Me {
    pub id: String,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
}

/// This node as it describes itself.
pub struct LocalNode {
    pub me: Me,
    /// When this process started, Unix ms.
    pub started_at: i64,
    /// Open connections and vehicles processed.
    pub metrics: Arc<Metrics>,
}

impl LocalNode {
    /// This node as listed, last seen at `last_seen`.
    pub fn describe(&self, last_seen: i64) -> ClusterNode {
        ClusterNode {
            id: self.me.id.clone(),
            mqtt: self.me.mqtt.to_string(),
            http: self.me.http.to_string(),
            started_at: self.started_at,
            last_seen,
            connections: u64::try_from(self.metrics.connections.load(Relaxed)).unwrap_or(0),
            vehicles: u64::try_from(self.metrics.vehicles.load(Relaxed)).unwrap_or(0),
        }
    }
}

/// The listing and this node's health, shared with the heartbeat task.
struct Shared {
    local: LocalNode,
    /// The other nodes at the last successful heartbeat.
    others: Mutex<Vec<ClusterNode>>,
    /// When the last heartbeat reached Redis (Unix ms); 0 before the first.
    last_ok: Mutex<i64>,
    up: AtomicBool,
    incarnation: watch::Sender<u64>,
}

/// This node's membership of the cluster.
pub struct Membership {
    shared: Arc<Shared>,
    /// The heartbeat task, which deletes this node's keys when it stops.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Membership {
    /// Starts heartbeating (lazily connected: Redis down now is not an error).
    ///
    /// # Errors
    /// [`ClusterError::Url`] for a client the connection manager cannot use.
    pub fn start(
        target: &Target,
        local: LocalNode,
        stop: CancellationToken,
    ) -> Result<Membership, ClusterError> {
        let conn = Conn::open(target).map_err(ClusterError::Url)?;
        let shared = Arc::new(Shared {
            local,
            others: Mutex::default(),
            last_ok: Mutex::new(0),
            up: AtomicBool::new(false),
            incarnation: watch::Sender::new(1),
        });
        let task = tokio::spawn(run(shared.clone(), conn, stop));
        Ok(Membership {
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.shared.local.me.id
    }

    /// The live nodes, this one first: the others as last read (silent ones left out), this
    /// one always (it answers).
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let now = now_ms();
        let dead_before = now - DEAD_AFTER.as_millis() as i64;
        let last_ok = *self
            .shared
            .last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut nodes = vec![
            self.shared
                .local
                .describe(if last_ok > 0 { last_ok } else { now }),
        ];
        let others = self.shared.others.lock().unwrap_or_else(|e| e.into_inner());
        nodes.extend(
            others
                .iter()
                .filter(|n| n.last_seen >= dead_before)
                .cloned(),
        );
        nodes
    }

    /// Waits (at most a second) for the heartbeat task to take this node out of the listing,
    /// after the stop token was cancelled.
    pub async fn close(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// Whether the last heartbeat reached Redis.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Relaxed)
    }

    /// The current incarnation, changed each time this node comes back after being declared
    /// dead (for leases: what was held under an older one is gone).
    pub fn incarnations(&self) -> watch::Receiver<u64> {
        self.shared.incarnation.subscribe()
    }

    /// `fleetmq_cluster_*` membership metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# HELP fleetmq_cluster_nodes Live nodes of the cluster, this one included.\n\
             # TYPE fleetmq_cluster_nodes gauge\nfleetmq_cluster_nodes {}\n\
             # HELP fleetmq_cluster_incarnation This node's incarnation (goes up each time it comes back after being declared dead).\n\
             # TYPE fleetmq_cluster_incarnation gauge\nfleetmq_cluster_incarnation {}\n",
            self.nodes().len(),
            *self.shared.incarnation.borrow(),
        );
    }
}

async fn run(shared: Arc<Shared>, mut conn: Conn, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let now = now_ms();
        match beat(&shared, &mut conn, now).await {
            Ok(others) => {
                let last_ok = std::mem::replace(
                    &mut *shared.last_ok.lock().unwrap_or_else(|e| e.into_inner()),
                    now,
                );
                if last_ok > 0 && now - last_ok >= DEAD_AFTER.as_millis() as i64 {
                    shared.incarnation.send_modify(|i| *i += 1);
                    tracing::warn!(
                        silent_ms = now - last_ok,
                        incarnation = *shared.incarnation.borrow(),
                        "cluster: this node was silent long enough to be declared dead; rejoining as a new incarnation"
                    );
                }
                *shared.others.lock().unwrap_or_else(|e| e.into_inner()) = others;
                if !shared.up.swap(true, Relaxed) {
                    tracing::info!(node = %shared.local.me.id, "cluster: heartbeat reaches redis");
                }
            }
            Err(e) => {
                if shared.up.swap(false, Relaxed) {
                    tracing::warn!(error = %e, "cluster: heartbeat failed; serving local clients");
                }
            }
        }
    }
    // Leaving: the others drop this node at once instead of after DEAD_AFTER.
    let id = &shared.local.me.id;
    // Two keys, two slots on a Redis Cluster: one command each.
    let mut del = redis::cmd("DEL");
    del.arg(node_key(id));
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(NODES_KEY).arg(id);
    let leave = conn::query_each(
        &conn,
        vec![(node_key(id), del), (NODES_KEY.to_owned(), zrem)],
        2,
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), leave).await;
}

/// One heartbeat: writes this node, drops the dead from the listing, reads the others.
async fn beat(shared: &Shared, conn: &mut Conn, now: i64) -> redis::RedisResult<Vec<ClusterNode>> {
    let me = shared.local.describe(now);
    let key = node_key(&me.id);
    let dead_before = now - DEAD_AFTER.as_millis() as i64;
    let incarnation = *shared.incarnation.borrow();
    // This node's hash and the listing are two keys (two slots on a Redis Cluster): one
    // pipeline each.
    redis::pipe()
        .hset_multiple(
            &key,
            &[
                ("mqtt", me.mqtt.clone()),
                ("http", me.http.clone()),
                ("started_at", me.started_at.to_string()),
                ("last_seen", now.to_string()),
                ("connections", me.connections.to_string()),
                ("vehicles", me.vehicles.to_string()),
                ("incarnation", incarnation.to_string()),
            ],
        )
        .ignore()
        .pexpire(&key, DEAD_AFTER.as_millis() as i64)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    let (ids,): (Vec<String>,) = redis::pipe()
        .zadd(NODES_KEY, &me.id, now)
        .ignore()
        .zrembyscore(NODES_KEY, "-inf", format!("({dead_before}"))
        .ignore()
        .cmd("ZRANGE")
        .arg(NODES_KEY)
        .arg(dead_before)
        .arg("+inf")
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_NODES)
        .query_async(conn)
        .await?;
    let ids: Vec<String> = ids.into_iter().filter(|id| *id != me.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let reads = ids
        .iter()
        .map(|id| {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(node_key(id));
            (node_key(id), cmd)
        })
        .collect();
    let hashes: Vec<std::collections::HashMap<String, String>> = conn::query_each(conn, reads, 500)
        .await?
        .into_iter()
        .map(|r| {
            r.ok()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or_default()
        })
        .collect();
    Ok(ids
        .into_iter()
        .zip(hashes)
        .filter_map(|(id, h)| parse_node(id, &h))
        .collect())
}

/// A node's hash as listed; `None` when it has expired (dead) or is not ours.
fn parse_node(id: String, h: &std::collections::HashMap<String, String>) -> Option<ClusterNode> {
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(ClusterNode {
        mqtt: h.get("mqtt")?.clone(),
        http: h.get("http")?.clone(),
        started_at: num("started_at")?,
        last_seen: num("last_seen")?,
        connections: num("connections").map_or(0, |n| n.max(0) as u64),
        vehicles: num("vehicles").map_or(0, |n| n.max(0) as u64),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_or_foreign_hash_is_not_a_node() {
        let mut h = std::collections::HashMap::new();
        assert!(parse_node("a".into(), &h).is_none());
        for (k, v) in [
            ("mqtt", "127.0.0.1:1883"),
            ("http", "127.0.0.1:8080"),
            ("started_at", "1"),
            ("last_seen", "2"),
            ("connections", "3"),
            ("vehicles", "4"),
        ] {
            h.insert(k.to_owned(), v.to_owned());
        }
        let n = parse_node("a".into(), &h).expect("a node");
        assert_eq!((n.last_seen, n.connections, n.vehicles), (2, 3, 4));
        h.insert("last_seen".into(), "x".into());
        assert!(parse_node("a".into(), &h).is_none());
    }
}
