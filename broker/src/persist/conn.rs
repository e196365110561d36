//! The one Redis connection type persistence uses: a single node (`--redis URL`) or a Redis
//! Cluster 7 (`--redis-cluster URL,URL,...`). Both are multiplexed, reconnect by themselves and
//! implement [`ConnectionLike`], so the writer, restore, `/track`, the SOS log and `/readyz` run
//! the same code on both. What differs is said here once:
//!
//! - [`Conn::cluster`]: a pipeline or a script must stay within one hash slot (the writer and the
//!   restore cut their pipelines by [`super::keys::slot`]; the client refuses a cross-slot
//!   pipeline before sending it).
//! - [`Conn::masters`] / [`Conn::scan`]: `SCAN` walks one node's keys, so the restore scans every
//!   master in turn.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::renewing::Renewing;

/// Longest wait for a TCP connection to a Redis node: fail fast and let our own loops back off,
/// so a request while Redis is down returns at once instead of queueing behind retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one reply.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one request through [`Conn`] (a command, a pipeline, a script), its
/// client's reconnects, retries and redirections included. [`RESPONSE_TIMEOUT`] bounds each
/// attempt; this bounds the whole, so that no Redis await in the broker can hang: a cluster
/// request caught in a slot migration was once seen never to complete (the writer then never
/// saw its stop signal and `Store::close` hung). Past it the request fails like a lost
/// connection: the writer keeps its batch and retries, and a cluster connection is replaced
/// ([`Renewing`]).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// Which Redis the settings name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `--redis URL`.
    Single(String),
    /// `--redis-cluster URL,URL,...`: seed nodes of one cluster.
    Cluster(Vec<String>),
}

impl Target {
    /// The target of `--redis` / `--redis-cluster` (the settings check allows at most one).
    pub fn from_config(config: &crate::Config) -> Option<Target> {
        if let Some(url) = &config.redis {
            return Some(Target::Single(url.clone()));
        }
        let seeds = config.redis_cluster.as_deref()?;
        Some(Target::Cluster(
            seeds
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }

    /// What the log and errors call it.
    pub fn describe(&self) -> String {
        match self {
            Target::Single(url) => format!("--redis {url}"),
            Target::Cluster(seeds) => format!("--redis-cluster {}", seeds.join(",")),
        }
    }
}

/// A connection to one Redis node or to a Redis Cluster; clones share it.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Renewing),
}

impl Conn {
    /// Connects lazily: Redis being down now is not an error.
    ///
    /// # Errors
    /// A URL that is not a Redis URL (or an empty seed list).
    pub fn open(target: &Target) -> RedisResult<Conn> {
        match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                    client,
                    manager_config(),
                )?))
            }
            Target::Cluster(seeds) => {
                let client = cluster_builder(seeds)?.build()?;
                Ok(Conn::Cluster(Renewing::new(
                    client,
                    cluster_config(),
                    REQUEST_DEADLINE,
                )))
            }
        }
    }

    /// Whether every pipeline and script must stay within one hash slot.
    pub fn cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// The nodes whose keys a full `SCAN` must walk: `None` for the one node, else each master's
    /// `(host, port)` as `CLUSTER SLOTS` lists them.
    ///
    /// # Errors
    /// A failed round trip or a reply that is not a slot table.
    pub async fn masters(&mut self) -> RedisResult<Vec<Option<(String, u16)>>> {
        let Conn::Cluster(c) = self else {
            return Ok(vec![None]);
        };
        let table: Vec<Vec<Value>> = c
            .run(
                |mut c| async move { redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await },
            )
            .await?;
        let mut masters = Vec::new();
        for range in table {
            // [start, end, [host, port, id, ...], replicas...]
            let Some(Value::Array(node)) = range.get(2) else {
                continue;
            };
            let host: Option<String> = node
                .first()
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            let port: Option<u16> = node
                .get(1)
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            if let (Some(host), Some(port)) = (host, port) {
                let master = Some((host, port));
                if !masters.contains(&master) {
                    masters.push(master);
                }
            }
        }
        if masters.is_empty() {
            return Err((redis::ErrorKind::Client, "CLUSTER SLOTS listed no master").into());
        }
        Ok(masters)
    }

    /// One `SCAN` step on `node` (from [`Conn::masters`]).
    ///
    /// # Errors
    /// A failed round trip.
    pub async fn scan(
        &mut self,
        node: &Option<(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = c
                    .run(|mut c| async move { c.route_command(cmd, routing).await })
                    .await?;
                Ok(redis::from_redis_value(reply)?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// The timeouts and retries of a single-node connection.
pub fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

/// A cluster client builder for `seeds`, with the retry waits both connection kinds use.
///
/// # Errors
/// No seed given.
pub fn cluster_builder(seeds: &[String]) -> RedisResult<ClusterClientBuilder> {
    if seeds.is_empty() {
        return Err((redis::ErrorKind::Client, "no seed node given").into());
    }
    Ok(ClusterClient::builder(seeds.iter().map(String::as_str))
        .retries(2)
        .min_retry_wait(50)
        .max_retry_wait(250))
}

/// The timeouts of a cluster connection ([`CONNECT_TIMEOUT`], [`RESPONSE_TIMEOUT`]).
pub fn cluster_config() -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
}

/// `request`, failed as an I/O error when it has not completed within [`REQUEST_DEADLINE`].
async fn within_deadline<T>(request: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(REQUEST_DEADLINE, request).await {
        Ok(reply) => reply,
        Err(_) => Err((redis::ErrorKind::Io, "no reply within the request deadline").into()),
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => Box::pin(within_deadline(c.req_packed_command(cmd))),
            Conn::Cluster(c) => {
                Box::pin(c.run(move |mut c| async move { c.req_packed_command(cmd).await }))
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => Box::pin(within_deadline(c.req_packed_commands(cmd, offset, count))),
            Conn::Cluster(c) => {
                Box::pin(c.run(move |mut c| async move {
                    c.req_packed_commands(cmd, offset, count).await
                }))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            // A cluster has database 0 only.
            Conn::Cluster(_) => 0,
        }
    }
}

/// Pipelines in flight at once on one connection: enough to hide round trips when a cluster
/// batch is cut into many per-slot pipelines, few enough to keep one flush's buffers small.
pub const PIPELINES_IN_FLIGHT: usize = 32;

/// Sends `pipes` (each within one hash slot on a cluster), [`PIPELINES_IN_FLIGHT`] at a time,
/// and returns each reply with its round-trip time, in the order given.
///
/// # Errors
/// The first failed round trip (the rest are dropped).
pub async fn query_all<T>(conn: &Conn, pipes: Vec<Pipeline>) -> RedisResult<Vec<(T, Duration)>>
where
    T: redis::FromRedisValue + Send + 'static,
{
    use futures_util::{StreamExt as _, TryStreamExt as _};
    futures_util::stream::iter(pipes)
        .map(|pipe| {
            let mut conn = conn.clone();
            async move {
                let started = std::time::Instant::now();
                let reply: T = pipe.query_async(&mut conn).await?;
                Ok((reply, started.elapsed()))
            }
        })
        .buffered(PIPELINES_IN_FLIGHT)
        .try_collect()
        .await
}

/// Sends `cmds`, each a command on one key (`(key, command)`), in pipelines that Redis Cluster
/// accepts: one per hash slot on a cluster, and at most `per_pipeline` commands each (on one
/// node the only cut). Replies come back in the order of `cmds`; a command Redis refused is an
/// `Err` in its place.
///
/// # Errors
/// The first failed round trip.
pub async fn query_each(
    conn: &Conn,
    cmds: Vec<(String, Cmd)>,
    per_pipeline: usize,
) -> RedisResult<Vec<RedisResult<Value>>> {
    let per_pipeline = per_pipeline.max(1);
    let count = cmds.len();
    let mut groups: std::collections::BTreeMap<u16, Vec<(usize, Cmd)>> = Default::default();
    for (i, (key, cmd)) in cmds.into_iter().enumerate() {
        let group = if conn.cluster() {
            super::keys::slot(&key)
        } else {
            0
        };
        groups.entry(group).or_default().push((i, cmd));
    }
    let mut pipes = Vec::new();
    let mut places: Vec<Vec<usize>> = Vec::new();
    for (_, group) in groups {
        let mut group = group.into_iter().peekable();
        while group.peek().is_some() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let mut place = Vec::new();
            for (i, cmd) in group.by_ref().take(per_pipeline) {
                pipe.add_command(cmd);
                place.push(i);
            }
            pipes.push(pipe);
            places.push(place);
        }
    }
    let replies = query_all::<Vec<RedisResult<Value>>>(conn, pipes).await?;
    let mut out: Vec<RedisResult<Value>> = (0..count).map(|_| Ok(Value::Nil)).collect();
    for ((results, _), place) in replies.into_iter().zip(places) {
        for (result, i) in results.into_iter().zip(place) {
            out[i] = result;
        }
    }
    Ok(out)
}
