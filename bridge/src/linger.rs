//! Closing a connection whose request was answered before its body was read (413 over a
//! body limit, 408, 429, any early error): the client must get that answer, not a reset.
//!
//! hyper then closes the connection, but says nothing about it in the response, and closes
//! with the rest of the body unread. Two things go wrong for a client such as `requests`:
//! it keeps the connection for its next request and writes it into a socket being closed,
//! and the close with unread input makes the kernel send a RST, which can wipe the response
//! from its receive buffer before it reads it. Both end as "Remote end closed connection
//! without response". So, as nginx does (`lingering_close`; RFC 9112 §9.6):
//! - [`Watched`] marks a request whose body the handler did not read to its end, and
//!   [`close_if_unread`] then adds `Connection: close` to the response, so the client does
//!   not reuse the connection (hyper closes it after the response, as the header says);
//! - [`Linger`] wraps the connection: when hyper shuts it down, it first closes the write side
//!   (FIN: the client has the whole response), then reads and discards what the client still
//!   sends until it closes too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`]; then the
//!   socket is dropped. The drain costs one small stack buffer, whatever the client sends. A
//!   connection hyper drops on an error (header read timeout, bad request line) is not shut
//!   down and does not linger.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{HeaderValue, Response, header::CONNECTION};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest a shut-down connection waits for the client to close its side.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// The most a shut-down connection reads (and discards) before it closes anyway.
pub const LINGER_BYTES: u64 = 16 * 1024 * 1024;

/// A request body that records whether it was read to its end.
pub struct Watched<B> {
    inner: B,
    ended: Arc<AtomicBool>,
}

impl<B: Body> Watched<B> {
    /// `body` and the flag [`close_if_unread`] checks (already set for an empty body).
    pub fn new(body: B) -> (Watched<B>, Arc<AtomicBool>) {
        let ended = Arc::new(AtomicBool::new(body.is_end_stream()));
        let watched = Watched {
            inner: body,
            ended: ended.clone(),
        };
        (watched, ended)
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.ended.store(true, Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Adds `Connection: close` to `response` unless the request body was read to its end.
pub fn close_if_unread<B>(response: &mut Response<B>, ended: &AtomicBool) {
    if !ended.load(Relaxed) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// A connection whose shutdown lingers (see the module doc).
pub struct Linger<T> {
    io: T,
    /// Set once the write side is closed: the deadline and the bytes discarded so far.
    draining: Option<(Pin<Box<Sleep>>, u64)>,
}

impl<T> Linger<T> {
    pub fn new(io: T) -> Linger<T> {
        Linger { io, draining: None }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Linger<T> {
    /// Reads and discards until the client closes, the deadline or the byte bound.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((deadline, drained)) = &mut self.draining else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 8 * 1024];
        loop {
            if deadline.as_mut().poll(cx).is_ready() || *drained >= LINGER_BYTES {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => *drained += buf.filled().len() as u64,
                // The client closed its side (or the socket failed): nothing left to protect.
                _ => return Poll::Ready(()),
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Linger<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.draining.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.draining = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), 0));
        }
        ready!(this.poll_drain(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::{LINGER_TIME, Linger};

    #[tokio::test]
    async fn shutdown_sends_fin_then_reads_what_the_peer_still_sends_until_it_closes() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = Linger::new(server);
        server.write_all(b"413").await.expect("write");
        let shutdown = tokio::spawn(async move { server.shutdown().await });
        // The peer is still sending (more than the pipe holds): the shutdown reads it away.
        let sent = tokio::time::timeout(Duration::from_secs(5), client.write_all(&[7u8; 4096]));
        sent.await.expect("the body is read").expect("write");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.expect("read");
        assert_eq!(reply, b"413");
        assert!(!shutdown.is_finished(), "lingers until the peer closes");
        drop(client);
        shutdown.await.expect("task").expect("shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_closes_is_left_after_the_linger_time() {
        let (server, _client) = tokio::io::duplex(64);
        let mut server = Linger::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.expect("shutdown");
        assert!(started.elapsed() >= LINGER_TIME);
        assert!(started.elapsed() < LINGER_TIME + Duration::from_secs(1));
    }
}
