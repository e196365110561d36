//! One simulated bus posting its fixes to `POST /api/v1/vehicles/{id}/location`
//! (docs/ingest-http.md) over one keep-alive HTTP/1.1 connection, as a phone app or a backend does:
//! a request, its `202`, the next request at the next tick. The schedule and the fixes are the MQTT
//! driver's ([`Route`]), so the two modes load the broker with the same updates.
//!
//! The client is a minimal HTTP/1.1 writer with `httparse` reading the replies: the bench needs
//! only `Content-Length` bodies on a connection of its own, and nothing that spawns per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use geo_engine::Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::driver::{Job, Route};

/// Largest reply head or body accepted from the broker (its replies are a few hundred bytes).
const MAX_REPLY: usize = 64 * 1024;

/// Posts fixes until `job.end` on `stream`; returns how many the broker answered 202.
///
/// # Errors
/// The route is not in the network, the connection fails, or the broker answers anything but 202.
pub async fn drive(
    mut stream: TcpStream,
    host: SocketAddr,
    job: Job,
    net: &'static Network,
    shared: Arc<Shared>,
) -> Result<u64> {
    let mut route = Route::new(&job, net)?;
    let path = format!("/api/v1/vehicles/{}{}/location", shared.prefix, job.index);
    let mut request = Vec::with_capacity(512);
    let mut buf = BytesMut::with_capacity(4096);
    let mut sent = 0u64;
    while let Some((ts, payload)) = route.next().await? {
        request.clear();
        request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                payload.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(&payload);
        shared
            .ledger
            .sent(job.index, ts, shared.epoch.elapsed().as_nanos() as u64);
        stream.write_all(&request).await?;
        let status = read_reply(&mut stream, &mut buf).await?;
        if status != 202 {
            bail!("driver {} got HTTP {status}", job.index);
        }
        sent += 1;
        shared.counters.a.fetch_add(1, Ordering::Relaxed);
    }
    Ok(sent)
}

/// Reads one reply (head and `Content-Length` body) from `stream`; its status code.
async fn read_reply(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<u16> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut reply = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = reply.parse(buf).context("bad HTTP reply")? {
            let status = reply.code.unwrap_or(0);
            let length = reply
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if length > MAX_REPLY {
                bail!("reply body of {length} bytes");
            }
            while buf.len() < head + length {
                fill(stream, buf).await?;
            }
            buf.advance(head + length);
            return Ok(status);
        }
        if buf.len() > MAX_REPLY {
            bail!("reply head over {MAX_REPLY} bytes");
        }
        fill(stream, buf).await?;
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    if stream.read_buf(buf).await? == 0 {
        bail!("the broker closed the connection");
    }
    Ok(())
}
