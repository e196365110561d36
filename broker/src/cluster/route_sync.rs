//! The Redis side of cluster routing (`routing`): one task per node that writes this node's
//! route set (each change, and the whole set every [`SYNC_EVERY`]), reads the other live
//! nodes' sets into the shared table, claims and releases client ids (kicking the previous
//! owner) and stores retained messages in the order of their stamps. The router never waits
//! on it: it gets work through a bounded queue (`routing::Command`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use redis::{AsyncCommands as _, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Membership;
use super::frame;
use super::route_table::RouteTable;
use super::routing::{
    Command, RETAINED_KEY, RETAINED_STAMPS_KEY, ROUTES_CHANGED, SYNC_EVERY, Shared, client_key,
    inbox, routes_key,
};
use crate::persist::Conn;
use crate::persist::conn::query_each;
use crate::persist::pubsub::Publisher;

/// Commands taken off the queue at once.
const BATCH: usize = 512;
/// Commands per pipeline.
const PER_PIPELINE: usize = 256;

/// A client id's owner key to take or give up.
enum Owner {
    Claim(Box<str>),
    Release(Box<str>),
}

impl Owner {
    fn client_id(&self) -> &str {
        match self {
            Owner::Claim(id) | Owner::Release(id) => id,
        }
    }
}

/// Writes a retained frame (or clears it, `ARGV[3]` empty) only when its stamp is newer.
const RETAIN_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and cur >= ARGV[2] then return 0 end
if not cur and ARGV[3] == '' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
";

/// Deletes a client id's owner key only if it names this node.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The task that talks to Redis for the remote.
pub(super) struct RouteSync {
    pub(super) node: Arc<str>,
    pub(super) shared: Arc<Shared>,
    pub(super) membership: Arc<Membership>,
    pub(super) conn: Conn,
    pub(super) publisher: Publisher,
}

impl RouteSync {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _: Result<(), _> = self.conn.del(routes_key(&self.node)).await;
                    return;
                }
                n = commands.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.commands(batch.drain(..)).await;
                }
                () = self.shared.refresh.notified() => self.read_routes().await,
                _ = tick.tick() => {
                    self.write_routes().await;
                    self.read_routes().await;
                }
            }
        }
    }

    /// Runs commands in order; a run of claims and releases (a connect storm) goes out
    /// together, in per-slot pipelines that keep the order of each client id's commands.
    async fn commands(&mut self, commands: impl Iterator<Item = Command>) {
        let mut owners: Vec<Owner> = Vec::new();
        for c in commands {
            match c {
                Command::Claim(id) => owners.push(Owner::Claim(id)),
                Command::Release(id) => owners.push(Owner::Release(id)),
                other => {
                    self.owners(std::mem::take(&mut owners)).await;
                    self.command(other).await;
                }
            }
        }
        self.owners(owners).await;
    }

    async fn command(&mut self, c: Command) {
        let key = routes_key(&self.node);
        let result = match c {
            Command::Add(f) => self.conn.sadd::<_, _, ()>(&key, &*f).await,
            Command::Remove(f) => self.conn.srem::<_, _, ()>(&key, &*f).await,
            Command::Claim(id) => return self.owners(vec![Owner::Claim(id)]).await,
            Command::Release(id) => return self.owners(vec![Owner::Release(id)]).await,
            Command::Retain {
                topic,
                stamp,
                frame,
            } => return self.retain(&topic, &stamp, frame).await,
        };
        match result {
            Ok(()) => self
                .publisher
                .publish(ROUTES_CHANGED, Bytes::from(self.node.to_string())),
            Err(e) => tracing::debug!(error = %e, "cluster: route change not written"),
        }
    }

    /// Claims (takes the client id for this node, kicking the node that held it) and
    /// releases (deletes the id's owner key if it still names this node: another node may
    /// have claimed it since), in one batch.
    async fn owners(&mut self, owners: Vec<Owner>) {
        if owners.is_empty() {
            return;
        }
        let cmds = owners
            .iter()
            .map(|o| {
                let key = client_key(o.client_id());
                let cmd = match o {
                    Owner::Claim(_) => {
                        let mut cmd = redis::cmd("SET");
                        cmd.arg(&key).arg(&*self.node).arg("GET");
                        cmd
                    }
                    Owner::Release(_) => {
                        let mut cmd = redis::cmd("EVAL");
                        cmd.arg(RELEASE_SCRIPT).arg(1).arg(&key).arg(&*self.node);
                        cmd
                    }
                };
                (key, cmd)
            })
            .collect();
        let replies = match query_each(&self.conn, cmds, PER_PIPELINE).await {
            Ok(replies) => replies,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: client ids not claimed or released");
                return;
            }
        };
        for (o, reply) in owners.iter().zip(replies) {
            match (o, reply) {
                (Owner::Claim(id), Ok(Value::BulkString(owner)))
                    if *owner != *self.node.as_bytes() =>
                {
                    // An owner that is not UTF-8 was not written by a node.
                    if let Ok(owner) = std::str::from_utf8(&owner) {
                        self.publisher.publish(&inbox(owner), frame::kick(id));
                    }
                }
                (_, Ok(_)) => {}
                (Owner::Claim(_), Err(e)) => {
                    tracing::debug!(error = %e, "cluster: client id not claimed");
                }
                (Owner::Release(_), Err(e)) => {
                    tracing::debug!(error = %e, "cluster: client id not released");
                }
            }
        }
    }

    /// Stores (or clears) a retained message in Redis unless a newer one is there.
    async fn retain(&mut self, topic: &str, stamp: &str, frame: Option<Bytes>) {
        // EVAL: the script is tiny and retained writes are rare (the redis crate's `script`
        // feature, for EVALSHA, is not built).
        let result: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(RETAIN_SCRIPT)
            .arg(2)
            .arg(RETAINED_KEY)
            .arg(RETAINED_STAMPS_KEY)
            .arg(topic)
            .arg(stamp)
            .arg(frame.as_deref().unwrap_or_default())
            .query_async(&mut self.conn)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cluster: retained message not stored");
        }
    }

    /// Rewrites this node's filter set from the local counts.
    async fn write_routes(&mut self) {
        let filters: Vec<String> = {
            let local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
            local.keys().map(|f| f.to_string()).collect()
        };
        let key = routes_key(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !filters.is_empty() {
            pipe.sadd(&key, filters).ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conn).await {
            tracing::debug!(error = %e, "cluster: routes not written");
        }
    }

    /// Reads the filter sets of the other live nodes into the table.
    async fn read_routes(&mut self) {
        let mut table = Vec::new();
        for n in self.membership.nodes() {
            if *n.id == *self.node {
                continue;
            }
            let filters: redis::RedisResult<Vec<String>> =
                self.conn.smembers(routes_key(&n.id)).await;
            match filters {
                // `RouteTable::new` leaves out invalid filters (Redis is writable by others).
                Ok(f) => table.push((n.id.as_str().into(), f.into_iter().map(Box::from).collect())),
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: routes not read");
                    return;
                }
            }
        }
        let table = Arc::new(RouteTable::new(table));
        *self.shared.table.lock().unwrap_or_else(|e| e.into_inner()) = table;
    }
}

/// The longest a starting node waits for the cluster's retained messages (it starts without
/// them when Redis does not answer, as a node started while Redis is away).
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The cluster's retained messages, read once at start, before the node accepts clients.
pub(super) async fn load_retained(conn: &mut Conn) -> Vec<frame::Received> {
    let read = conn.hgetall::<_, HashMap<String, Vec<u8>>>(RETAINED_KEY);
    match tokio::time::timeout(LOAD_TIMEOUT, read).await {
        Ok(Ok(all)) => all
            .into_values()
            .filter_map(|f| frame::read(Bytes::from(f)).ok())
            .collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cluster: retained messages not read from Redis");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("cluster: retained messages not read from Redis (timed out)");
            Vec::new()
        }
    }
}
