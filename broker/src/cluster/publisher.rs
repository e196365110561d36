//! The cluster bus's publishing connection on one Redis server (`--redis`): a batch of frames
//! goes out as pipelined `PUBLISH` commands written straight from the frames' bytes (each a
//! small header, the frame, a CRLF: the frame is not copied) on a [`RespConn`] of its own, and
//! the replies are read by [`super::resp`]'s reader (see there why not redis-rs, and the
//! limits). The connection is opened on first use and again after any failure.

use std::io::IoSlice;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use redis::ConnectionInfo;

use super::resp::{PING, Reply, RespConn, RespError};

/// Longest wait for a batch's replies (or a `PING`'s) once it is written.
pub const RESPONSE: Duration = Duration::from_secs(2);

/// `PUBLISH` on one Redis server.
pub struct FramePublisher {
    info: ConnectionInfo,
    /// The connection between calls: taken out for a call and put back after it succeeded,
    /// so no lock is held while Redis is awaited (the bus's publisher task makes one call at a
    /// time; a second caller meanwhile would open a connection of its own).
    idle: Mutex<Option<RespConn>>,
}

impl FramePublisher {
    /// Connects on first use.
    pub fn new(info: ConnectionInfo) -> FramePublisher {
        FramePublisher {
            info,
            idle: Mutex::new(None),
        }
    }

    /// Publishes each (channel, frame) in order; returns when Redis took them all.
    ///
    /// # Errors
    /// Connecting failed, Redis refused a `PUBLISH`, or no reply within [`RESPONSE`]; the
    /// connection is dropped (some frames may have been published).
    pub async fn publish(&self, batch: &[(String, Bytes)]) -> Result<(), RespError> {
        self.call(Some(batch)).await
    }

    /// A round trip to Redis.
    ///
    /// # Errors
    /// As [`FramePublisher::publish`].
    pub async fn ping(&self) -> Result<(), RespError> {
        self.call(None).await
    }

    /// Writes `batch` (a `PING` for `None`) on the idle connection or a new one, then reads a
    /// reply per command.
    async fn call(&self, batch: Option<&[(String, Bytes)]>) -> Result<(), RespError> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut conn = match taken {
            Some(conn) => conn,
            None => RespConn::open(&self.info).await?,
        };
        let exchange = async {
            let replies = match batch {
                Some(batch) => {
                    send_frames(&mut conn, batch).await?;
                    batch.len()
                }
                None => {
                    conn.send(PING).await?;
                    1
                }
            };
            for _ in 0..replies {
                match conn.reply().await? {
                    Some(Reply::Error(e)) => return Err(RespError::Refused(e)),
                    Some(_) => {}
                    None => return Err(RespError::Protocol("closed before replying")),
                }
            }
            Ok(())
        };
        tokio::time::timeout(RESPONSE, exchange)
            .await
            .map_err(|_| RespError::Timeout("replies", RESPONSE))??;
        *self.idle.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        Ok(())
    }
}

/// Writes one `PUBLISH channel frame` per item, the frames from their own bytes.
async fn send_frames(conn: &mut RespConn, batch: &[(String, Bytes)]) -> Result<(), RespError> {
    let headers: Vec<Vec<u8>> = batch
        .iter()
        .map(|(channel, frame)| {
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
                channel.len(),
                frame.len()
            )
            .into_bytes()
        })
        .collect();
    let mut parts = Vec::with_capacity(batch.len() * 3);
    for ((_, frame), header) in batch.iter().zip(&headers) {
        parts.push(IoSlice::new(header));
        parts.push(IoSlice::new(frame));
        parts.push(IoSlice::new(b"\r\n"));
    }
    conn.send_parts(&mut parts).await
}

#[cfg(test)]
#[path = "publisher_tests.rs"]
mod tests;
