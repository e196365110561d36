//! A Redis Cluster connection that is replaced when it stops answering.
//!
//! redis-rs 1.8.1's async cluster client was seen, under load, to stop completing requests after
//! the slot refresh that follows a reshard (it logs "beginning slot refresh", then nothing: no
//! reply, no error, no timeout, because the request never leaves the client's own queue). A new
//! connection made from the same client and settings works at once. So every request here runs
//! under a deadline, and a request that outlives it replaces the connection all clones share;
//! the request itself fails like a lost connection, which every caller already retries.
//!
//! A request that is merely slow (a big pipeline on a loaded Redis) costs the same: one new
//! connection per deadline passed, never more than one per generation however many requests
//! were waiting on the old one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::RedisResult;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;

/// A shared, replaceable cluster connection; clones share it.
#[derive(Clone)]
pub struct Renewing {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClusterClient,
    config: ClusterConfig,
    deadline: Duration,
    current: Mutex<Current>,
    replaced: AtomicU64,
}

struct Current {
    generation: u64,
    conn: ClusterConnection,
}

impl Renewing {
    /// A connection of `client` with `config` (connecting lazily, in the background), whose
    /// requests fail and replace it after `deadline`.
    pub fn new(client: ClusterClient, config: ClusterConfig, deadline: Duration) -> Renewing {
        let conn = client.get_pending_async_connection_with_config(config.clone());
        Renewing {
            shared: Arc::new(Shared {
                client,
                config,
                deadline,
                current: Mutex::new(Current {
                    generation: 0,
                    conn,
                }),
                replaced: AtomicU64::new(0),
            }),
        }
    }

    /// How many times the connection was replaced.
    pub fn replaced(&self) -> u64 {
        self.shared.replaced.load(Ordering::Relaxed)
    }

    /// Runs `request` on (a handle of) the current connection, within the deadline. Past it the
    /// connection is replaced and the request fails as an I/O error.
    ///
    /// # Errors
    /// The request's own error, or the deadline passed.
    pub async fn run<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: FnOnce(ClusterConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.current();
        match tokio::time::timeout(self.shared.deadline, request(conn)).await {
            Ok(reply) => reply,
            Err(_) => {
                self.replace(generation);
                Err((
                    redis::ErrorKind::Io,
                    "no reply within the request deadline; the cluster connection was replaced",
                )
                    .into())
            }
        }
    }

    fn current(&self) -> (u64, ClusterConnection) {
        let current = self.lock();
        (current.generation, current.conn.clone())
    }

    /// Replaces the connection of `generation`; a later generation is already fresh.
    fn replace(&self, generation: u64) {
        let mut current = self.lock();
        if current.generation != generation {
            return;
        }
        current.conn = self
            .shared
            .client
            .get_pending_async_connection_with_config(self.shared.config.clone());
        current.generation += 1;
        self.shared.replaced.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            deadline_s = self.shared.deadline.as_secs_f64(),
            "redis cluster: a request got no reply within its deadline; connection replaced"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // Held only to clone or swap the handle, never across an await.
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Renewing;
    use crate::persist::conn::{Target, cluster_builder, cluster_config};
    use crate::persist::test_redis::RedisCluster;

    /// A connection on which nothing completes any more (here: a `BLPOP` that never returns
    /// holds the node's multiplexed connection, as the wedged client held its queue) is replaced
    /// at the deadline, and the next request on the same slot is answered at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_stops_answering_is_replaced_at_the_deadline() {
        let cluster = RedisCluster::start();
        let Target::Cluster(seeds) = cluster.target() else {
            unreachable!("a cluster target")
        };
        let client = cluster_builder(&seeds)
            .expect("builder")
            .build()
            .expect("client");
        let deadline = Duration::from_secs(1);
        let conn = Renewing::new(client, cluster_config(), deadline);
        let () = conn
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg("{wedge}:k")
                    .arg("v")
                    .query_async(&mut c)
                    .await
            })
            .await
            .expect("SET");

        let blocked = conn
            .run(|mut c| async move {
                redis::cmd("BLPOP")
                    .arg("{wedge}:never")
                    .arg(0)
                    .query_async::<redis::Value>(&mut c)
                    .await
            })
            .await;
        assert!(
            blocked.is_err(),
            "BLPOP on an empty list answered: {blocked:?}"
        );
        assert_eq!(conn.replaced(), 1);

        // Same slot, so the old connection would queue it behind the BLPOP for ever.
        let started = Instant::now();
        let value: String = conn
            .run(
                |mut c| async move { redis::cmd("GET").arg("{wedge}:k").query_async(&mut c).await },
            )
            .await
            .expect("GET on the new connection");
        assert_eq!(value, "v");
        assert!(started.elapsed() < deadline, "took {:?}", started.elapsed());
        assert_eq!(conn.replaced(), 1, "a healthy request replaced nothing");
    }
}
