//! The cluster bus's receiving connection on one Redis server (`--redis`): a [`RespConn`] of
//! its own in `SUBSCRIBE` mode (see [`super::resp`] for why not redis-rs's `PubSub`, and for
//! the limits). A message is cut out of the read buffer as [`Bytes`] without a copy; a Redis
//! that goes silent is pinged and given up after 2 × [`super::resp::IDLE`].

use std::collections::VecDeque;

use bytes::Bytes;
use redis::ConnectionInfo;

use super::resp::{Reply, RespConn, RespError, SETUP, command};

/// Messages that may arrive before every channel's confirmation, kept for the stream.
const EARLY: usize = 256;

/// A connection subscribed to the bus's channels.
pub struct Subscription {
    conn: RespConn,
    /// Messages that came before the last confirmation.
    early: VecDeque<(Bytes, Bytes)>,
}

impl Subscription {
    /// Connects to the server of `info`, authenticates as it says, and subscribes to
    /// `channels`; returns once Redis confirmed every channel.
    ///
    /// # Errors
    /// Connection failures, a refused `AUTH` or `SUBSCRIBE`, or [`SETUP`] passing (twice at
    /// most: connecting, then the confirmations).
    pub async fn open(
        info: &ConnectionInfo,
        channels: &[String],
    ) -> Result<Subscription, RespError> {
        let conn = RespConn::open(info).await?;
        tokio::time::timeout(SETUP, Self::subscribe(conn, channels))
            .await
            .map_err(|_| RespError::Timeout("subscribe", SETUP))?
    }

    async fn subscribe(mut conn: RespConn, channels: &[String]) -> Result<Subscription, RespError> {
        let mut subscribe: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        subscribe.extend(channels.iter().map(|c| c.as_bytes()));
        conn.send(&command(&subscribe)).await?;
        let mut sub = Subscription {
            conn,
            early: VecDeque::new(),
        };
        let mut confirmed = 0;
        while confirmed < channels.len() {
            match sub.conn.reply().await? {
                Some(Reply::Subscribed) => confirmed += 1,
                Some(Reply::Error(e)) => return Err(RespError::Refused(e)),
                Some(Reply::Message(channel, payload)) if sub.early.len() < EARLY => {
                    sub.early.push_back((channel, payload));
                }
                Some(Reply::Message(..)) => {
                    return Err(RespError::Protocol("messages before the confirmations"));
                }
                Some(Reply::Other) => {}
                None => return Err(RespError::Protocol("closed during SUBSCRIBE")),
            }
        }
        Ok(sub)
    }

    /// The next message: (channel, payload); `Ok(None)` when Redis closed the connection.
    ///
    /// # Errors
    /// I/O errors, bytes that are not RESP2, an error reply, or silence past 2 ×
    /// [`super::resp::IDLE`].
    pub async fn next(&mut self) -> Result<Option<(Bytes, Bytes)>, RespError> {
        if let Some(m) = self.early.pop_front() {
            return Ok(Some(m));
        }
        loop {
            match self.conn.reply().await? {
                Some(Reply::Message(channel, payload)) => return Ok(Some((channel, payload))),
                Some(Reply::Error(e)) => return Err(RespError::Refused(e)),
                Some(Reply::Subscribed | Reply::Other) => {}
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
#[path = "subscriber_tests.rs"]
mod tests;
