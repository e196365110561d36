//! The socket of one connected client, driven by one task: it moves what the router queued
//! on the link into the write buffer, writes, reads and decodes, and watches the keep-alive
//! and write deadlines, all from a single poll. One task per connection (not a reader and a
//! writer) keeps an idle connection to one small future.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use fleetmq_codec::{BytesMut, DecodeError, Packet, Protocol, decode, whole_packet_len};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::outbound::{Next, Outbound};
use crate::context::Context;
use crate::link::{ConnLink, LINK_CAPACITY};

/// Bytes gathered before a write. While the buffer holds this much, no more is taken from the
/// link and no more is read from the client (whose packets may need acknowledgements).
pub const BATCH_BYTES: usize = 64 * 1024;

/// Longest a write may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes reserved for each read while data keeps coming; a larger packet grows the buffer up
/// to the maximum packet size.
pub const READ_CHUNK: usize = 2048;

/// Bytes reserved for the first read after a quiet spell while connecting: enough for a
/// CONNECT, little to hold while it is awaited.
pub const QUIET_CHUNK: usize = 128;

/// Why a connection stops.
#[derive(Debug)]
pub enum End {
    Decode(DecodeError),
    KeepAlive,
    /// The client's token expired (docs/security.md: v5 DISCONNECT 0xA0, 3.1.1 close).
    TokenExpired,
    /// The client closed, or the link was told to close.
    Closed,
    /// A DISCONNECT from the link was written.
    Disconnected,
    Io,
    WriteStalled,
}

/// The read buffer of one connection.
#[derive(Default)]
pub struct ReadBuf {
    pub buf: BytesMut,
    /// The last read filled all the room it had: more is probably waiting, so keep a full
    /// chunk. Otherwise the socket went quiet and the buffer is released between packets.
    pub hot: bool,
}

impl ReadBuf {
    /// The next whole packet already buffered, if any.
    pub fn decode(&mut self, protocol: Protocol, max: usize) -> Result<Option<Packet>, End> {
        match decode(&mut self.buf, protocol, max) {
            Ok(Some(p)) => {
                if self.buf.is_empty() && !self.hot {
                    // Nothing buffered and the socket was drained: give the memory back, so
                    // an idle connection holds (almost) no read buffer.
                    self.buf = BytesMut::new();
                }
                Ok(Some(p))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(End::Decode(e)),
        }
    }

    /// Room for the next read.
    pub fn reserve(&mut self) -> usize {
        let chunk = if self.hot || !self.buf.is_empty() {
            READ_CHUNK
        } else {
            QUIET_CHUNK
        };
        if self.buf.capacity() - self.buf.len() < chunk / 4 {
            self.buf.reserve(chunk);
        }
        self.buf.capacity() - self.buf.len()
    }
}

/// Bytes a closing connection reads and discards at most while the client has not closed its
/// side yet ([`Socket::finish`]).
pub const LINGER_BYTES: usize = 256 * 1024;

/// A connected client's byte stream with its buffers and deadlines.
pub struct Socket<S> {
    pub stream: S,
    pub rb: ReadBuf,
    /// Encoded packets not yet written.
    pub out: BytesMut,
    keep_alive: Duration,
    last_read: Instant,
    /// Since when the client has not taken any of a non-empty write buffer.
    stalled_since: Option<Instant>,
    needs_flush: bool,
    /// A DISCONNECT from the link is in `out`: close once it is written.
    closing: bool,
    /// Woken for queued items with nothing else to write, the connection waited one round
    /// of the scheduler before taking them (see [`Socket::poll_next`]).
    deferred: bool,
    /// When the client's token expires; `None` without one.
    token_deadline: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    pub fn new(stream: S, rb: ReadBuf, keep_alive: Duration) -> Socket<S> {
        Socket {
            stream,
            rb,
            out: BytesMut::new(),
            keep_alive,
            last_read: Instant::now(),
            stalled_since: None,
            needs_flush: false,
            closing: false,
            deferred: false,
            token_deadline: None,
        }
    }

    /// Ends the connection with [`End::TokenExpired`] at `at` (moved by re-authentication).
    pub fn set_token_deadline(&mut self, at: Option<Instant>) {
        self.token_deadline = at;
    }

    /// Writes, takes from the link and reads until a whole packet is buffered (take it with
    /// [`Socket::take_packet`]) or the connection must end; `Pending` when nothing can move.
    ///
    /// The packet itself is not returned: a value crossing this await would be a packet-sized
    /// slot in every connection's future, idle or not.
    pub fn poll_next(
        &mut self,
        cx: &mut TaskContext<'_>,
        ctx: &Context,
        link: &ConnLink,
        outbound: &mut Outbound,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<Result<(), End>> {
        link.register(cx.waker());
        if link.is_closing() && !self.closing {
            return Poll::Ready(Err(End::Closed));
        }
        if !self.deferred && self.out.is_empty() && link.has_queued() {
            // Woken for the first queued item: what the router queues during one scheduler
            // round goes out in the same write (see `defer`). A watcher of many vehicles
            // costs one `write` per round instead of one per message.
            self.deferred = true;
            return defer(cx);
        }
        let mut taken = 0;
        loop {
            let n = self.take_from_link(ctx, link, outbound);
            taken += n;
            let mut moved = n > 0;
            match self.poll_write(cx, ctx) {
                Poll::Ready(Ok(wrote)) => moved |= wrote,
                Poll::Ready(Err(end)) => return Poll::Ready(Err(end)),
                Poll::Pending => {}
            }
            if self.closing && self.out.is_empty() {
                return Poll::Ready(Err(End::Disconnected));
            }
            if !moved {
                break;
            }
        }
        if taken > 0 {
            self.deferred = false;
        }
        if taken == 0 && self.out.is_empty() && self.out.capacity() > 0 {
            // Woken with nothing to send: an idle connection keeps no write buffer (a busy
            // one, woken for a batch each time, keeps it between batches).
            self.out = BytesMut::new();
        }
        if self.out.len() < BATCH_BYTES && !self.closing {
            match self.poll_read(cx, ctx) {
                Poll::Ready(r) => return Poll::Ready(r),
                Poll::Pending => {}
            }
        }
        self.poll_deadlines(cx, timer.as_mut())
    }

    /// Moves queued items into the write buffer while it has room; tells the router when a
    /// queue it found full has drained to half.
    fn take_from_link(&mut self, ctx: &Context, link: &ConnLink, outbound: &mut Outbound) -> usize {
        if self.out.len() >= BATCH_BYTES || self.closing {
            return 0;
        }
        let out = &mut self.out;
        let mut closing = false;
        let (n, left) = link.drain(|item| match outbound.put(ctx, item, out) {
            Next::Close => {
                closing = true;
                false
            }
            Next::Continue => out.len() < BATCH_BYTES,
        });
        self.closing = closing;
        if left <= LINK_CAPACITY / 2 && link.take_want_ready() {
            let _ = ctx.ready.send((outbound.session, link.id));
        }
        n
    }

    /// Writes what it can of the buffer (then flushes it through any TLS or WebSocket layer);
    /// `Ready(Ok(true))` when bytes went out.
    fn poll_write(&mut self, cx: &mut TaskContext<'_>, ctx: &Context) -> Poll<Result<bool, End>> {
        let mut wrote = false;
        while !self.out.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Io)),
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    ctx.metrics.bytes_sent.fetch_add(n as u64, Relaxed);
                    self.stalled_since = None;
                    self.needs_flush = true;
                    wrote = true;
                }
                Poll::Pending => {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return if wrote {
                        Poll::Ready(Ok(true))
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
        if self.needs_flush {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Io)),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(wrote))
    }

    /// The packet [`Socket::poll_next`] found buffered.
    pub fn take_packet(&mut self, protocol: Protocol, max: usize) -> Result<Packet, End> {
        match self.rb.decode(protocol, max)? {
            Some(p) => Ok(p),
            None => Err(End::Decode(DecodeError::Malformed("incomplete packet"))),
        }
    }

    fn poll_read(&mut self, cx: &mut TaskContext<'_>, ctx: &Context) -> Poll<Result<(), End>> {
        let max = ctx.limits.max_packet_size;
        loop {
            match whole_packet_len(&self.rb.buf, max) {
                Ok(Some(_)) => return Poll::Ready(Ok(())),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(End::Decode(e))),
            }
            let read = if self.rb.buf.capacity() == 0 {
                self.poll_read_quiet(cx)
            } else {
                let room = self.rb.reserve();
                tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rb.buf)
                    .map_ok(|n| (n, n == room))
            };
            match read {
                Poll::Ready(Ok((0, _))) => return Poll::Ready(Err(End::Closed)),
                Poll::Ready(Ok((n, filled))) => {
                    self.rb.hot = filled;
                    if !self.keep_alive.is_zero() {
                        self.last_read = Instant::now();
                    }
                    ctx.metrics.bytes_received.fetch_add(n as u64, Relaxed);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Io)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads into the stack and keeps only what arrived: a quiet connection waits for its
    /// next packet holding no read buffer at all. `(bytes, whether the read filled the room)`.
    fn poll_read_quiet(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<(usize, bool)>> {
        // Uninitialised: zeroing 2 KiB per read of a quiet connection shows in profiles.
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut room = tokio::io::ReadBuf::uninit(&mut scratch);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut room))?;
        let n = room.filled().len();
        self.rb.buf.extend_from_slice(room.filled());
        Poll::Ready(Ok((n, n == READ_CHUNK)))
    }

    /// Ends the connection when the client has been silent past its keep-alive, has not
    /// read for `WRITE_TIMEOUT` or its token expired; otherwise arms the timer for the nearest.
    fn poll_deadlines(
        &mut self,
        cx: &mut TaskContext<'_>,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<Result<(), End>> {
        let keep_alive = (!self.keep_alive.is_zero()).then(|| self.last_read + self.keep_alive);
        let write = self.stalled_since.map(|t| t + WRITE_TIMEOUT);
        let Some(next) = [keep_alive, write, self.token_deadline]
            .into_iter()
            .flatten()
            .min()
        else {
            return Poll::Pending;
        };
        // The timer is moved later only once it fires, not on every packet: reading the
        // client's traffic must not cost a timer-wheel update each time.
        loop {
            if timer.deadline() > next {
                timer.as_mut().reset(next);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if timer.deadline() >= next {
                break;
            }
            timer.as_mut().reset(next);
        }
        if write.is_some_and(|w| w <= next) {
            Poll::Ready(Err(End::WriteStalled))
        } else if self.token_deadline.is_some_and(|t| t <= next) {
            Poll::Ready(Err(End::TokenExpired))
        } else {
            Poll::Ready(Err(End::KeepAlive))
        }
    }

    /// Best effort at the end, for at most `limit` in all: writes what is buffered, shuts the
    /// write side down, then reads and discards what the client still sends until it closes
    /// too (at most [`LINGER_BYTES`]). Closing a socket with unread data makes the kernel answer
    /// with a reset, and a reset that reaches the client before it read our last packet (a
    /// DISCONNECT with its reason code, say 0x96 to a client flooding us) destroys it.
    pub async fn finish(&mut self, limit: Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tokio::time::timeout(limit, async {
            let _ = self.stream.write_all_buf(&mut self.out).await;
            let _ = self.stream.shutdown().await;
            let mut scratch = vec![0; 4096];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

/// `Pending`, with this task woken again after one round of the scheduler
/// ([`tokio::task::yield_now`]'s deferral). No timer: tokio runs a deferred task again at its
/// next poll for I/O, which comes once the ready tasks have run and at the latest after 61 of
/// them (`event_interval`), so the wait is a fraction of a millisecond, and nothing while the
/// scheduler is otherwise idle.
fn defer<T>(cx: &mut TaskContext<'_>) -> Poll<T> {
    let mut yielding = std::pin::pin!(tokio::task::yield_now());
    // `yield_now`'s first poll registers the deferred wake-up and is always pending; the
    // future is done with after it.
    let _ = yielding.as_mut().poll(cx);
    Poll::Pending
}
