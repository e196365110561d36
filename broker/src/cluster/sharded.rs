//! The bus's transport on a Redis Cluster (`--redis-cluster`): sharded pub/sub. Plain `PUBLISH`
//! on a cluster is copied to every shard; `SPUBLISH` goes only to the master of the channel's
//! hash slot, and the [`super::bus::channels`] are spread over the slots. Publishing goes
//! through `persist`'s cluster connection, one pipeline per slot; subscribing through
//! `persist::pubsub`, which subscribes slot by slot and again after a reconnect or a slot move.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::bus::{Messages, Transport};
use crate::persist::pubsub::PubSub;
use crate::persist::{Conn, conn};

/// Messages per pipeline.
const PER_PIPELINE: usize = 512;

/// `SPUBLISH` / `SSUBSCRIBE` over a Redis Cluster.
pub struct ShardedTransport {
    conn: Conn,
    pubsub: PubSub,
}

impl ShardedTransport {
    pub fn new(conn: Conn, pubsub: PubSub) -> ShardedTransport {
        ShardedTransport { conn, pubsub }
    }
}

impl Transport for ShardedTransport {
    fn publish(&self, batch: Vec<(String, Bytes)>) -> BoxFuture<'_, redis::RedisResult<()>> {
        Box::pin(async move {
            let cmds = batch
                .into_iter()
                .map(|(channel, payload)| {
                    let mut cmd = redis::cmd("SPUBLISH");
                    cmd.arg(&channel).arg(payload.as_ref());
                    (channel, cmd)
                })
                .collect();
            conn::query_each(&self.conn, cmds, PER_PIPELINE).await?;
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, redis::RedisResult<()>> {
        let mut conn = self.conn.clone();
        Box::pin(async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
    }

    fn subscribe(&self, channels: Vec<String>) -> BoxFuture<'_, redis::RedisResult<Messages>> {
        Box::pin(async move {
            let receiver = self.pubsub.subscribe(channels).map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Client, "subscribe", e.to_string()))
            })?;
            let messages = futures_util::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|m| (m, receiver))
            });
            Ok(messages.boxed())
        })
    }
}
