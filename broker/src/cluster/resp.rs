//! A plain Redis connection of our own, for the cluster bus on one Redis server (`--redis`):
//! connect, `AUTH` as the URL says, commands written from borrowed bytes, RESP2 replies parsed
//! without copying what they carry. [`super::subscriber`] subscribes on one,
//! [`super::publisher`] publishes frames on another; every other Redis command stays on
//! redis-rs.
//!
//! Why not redis-rs for these two: its `combine`-based decoder cost ~3,300 instructions per
//! processed update in a three-node cluster (each update is received by two nodes; callgrind,
//! bench/RESULTS.md session 18), the largest single part of what a node spent taking in the
//! others' outputs, and both directions copied every frame once or twice more.
//!
//! # Limits
//! - A reply's bulk strings at most [`MAX_BULK`] bytes each, its header lines at most
//!   [`MAX_LINE`], at most four elements (pub/sub pushes have three or four). Anything
//!   longer, or bytes that are not RESP2, fail the connection with an error: its user drops it
//!   and connects again with backoff.
//! - The read buffer holds at most one incomplete reply plus [`READ_CHUNK`]. Replies handed
//!   out share the buffer they were read into, so what the bus's inbox holds pins at most the
//!   bytes received for it plus one chunk.
//! - Liveness: after [`IDLE`] without a byte from Redis while a reply is awaited, a `PING` is
//!   sent; when another [`IDLE`] passes without one the connection fails
//!   ([`RespError::Silent`]), so a Redis that vanished without closing the socket is noticed
//!   within 2 × [`IDLE`].
//! - Connecting and `AUTH` take at most [`SETUP`].

use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest channel name or payload taken.
pub const MAX_BULK: usize = 16 * 1024 * 1024;
/// Longest header line (`*3`, `$1234`, `-ERR ...`).
pub const MAX_LINE: usize = 4096;
/// Bytes read at a time, at least.
pub const READ_CHUNK: usize = 64 * 1024;
/// Silence after which the reader pings, and then gives up.
pub const IDLE: Duration = Duration::from_secs(3);
/// Longest connect + `AUTH` (+ `SUBSCRIBE` confirmation for a subscriber).
pub const SETUP: Duration = Duration::from_secs(3);

/// Why a connection could not be made, or failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis: not a RESP2 reply: {0}")]
    Protocol(&'static str),
    #[error("redis answered {0}")]
    Refused(String),
    #[error("redis: {0} took over {1:?}")]
    Timeout(&'static str, Duration),
    #[error("redis: no reply to PING within {IDLE:?}")]
    Silent,
    #[error("redis: {0} is not supported for the cluster bus")]
    Unsupported(&'static str),
}

/// What Redis answers or pushes, as far as the bus cares.
#[derive(Debug, PartialEq)]
pub(super) enum Reply {
    /// A publication: (channel, payload).
    Message(Bytes, Bytes),
    /// A channel's `subscribe` confirmation.
    Subscribed,
    /// An error reply, `-ERR ...`.
    Error(String),
    /// Anything else (`+OK` of `AUTH`, `PUBLISH`'s count, `pong`, `unsubscribe`).
    Other,
}

/// Where a reply lies in the buffer (see [`scan`]).
struct Scanned {
    /// Its type byte.
    kind: u8,
    /// Up to four elements; the first holds an error's text.
    elements: [Element; 4],
    /// How many elements there are.
    count: usize,
    /// Its length.
    end: usize,
}

/// A parsed element's place in the buffer.
#[derive(Clone, Copy)]
enum Element {
    Text(usize, usize),
    Other,
}

/// Reads one reply from the front of `buf`, removing it; `Ok(None)` while `buf` holds only the
/// start of one.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<Reply>, RespError> {
    let Some(Scanned {
        kind,
        elements,
        count,
        end,
    }) = scan(buf)?
    else {
        return Ok(None);
    };
    let frame = buf.split_to(end).freeze();
    let text = |e: Element| match e {
        Element::Text(from, to) => Some(frame.slice(from..to)),
        Element::Other => None,
    };
    Ok(Some(match kind {
        b'-' => {
            let line = text(elements[0]).unwrap_or_default();
            Reply::Error(String::from_utf8_lossy(&line).into_owned())
        }
        b'*' if count > 0 => match text(elements[0]).as_deref() {
            Some(b"message") if count == 3 => match (text(elements[1]), text(elements[2])) {
                (Some(channel), Some(payload)) => Reply::Message(channel, payload),
                _ => {
                    return Err(RespError::Protocol("a message without channel or payload"));
                }
            },
            Some(b"subscribe") => Reply::Subscribed,
            _ => Reply::Other,
        },
        _ => Reply::Other,
    }))
}

/// Where the reply at the front of `buf` lies; `None` while incomplete.
fn scan(buf: &[u8]) -> Result<Option<Scanned>, RespError> {
    let mut elements = [Element::Other; 4];
    let done = |kind, elements, count, end| {
        Ok(Some(Scanned {
            kind,
            elements,
            count,
            end,
        }))
    };
    let Some((line, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let kind = line[0];
    match kind {
        b'+' | b':' => done(kind, elements, 0, at),
        b'-' => {
            elements[0] = Element::Text(1, at - 2);
            done(kind, elements, 1, at)
        }
        b'$' => match element(buf, 0)? {
            Some((_, end)) => done(kind, elements, 0, end),
            None => Ok(None),
        },
        b'*' => {
            let n = number(&line[1..])?;
            if n < 0 {
                return done(kind, elements, 0, at);
            }
            let n = usize::try_from(n).map_err(|_| RespError::Protocol("array length"))?;
            if n > elements.len() {
                return Err(RespError::Protocol("an array of more than 4 elements"));
            }
            for slot in elements.iter_mut().take(n) {
                let Some((e, end)) = element(buf, at)? else {
                    return Ok(None);
                };
                *slot = e;
                at = end;
            }
            done(kind, elements, n, at)
        }
        _ => Err(RespError::Protocol("unknown reply type")),
    }
}

/// One element of an array at `at`: a bulk string's bytes, or a scalar; and where it ends.
fn element(buf: &[u8], at: usize) -> Result<Option<(Element, usize)>, RespError> {
    let Some((line, after)) = line(buf, at)? else {
        return Ok(None);
    };
    match line[0] {
        b'$' => {
            let len = number(&line[1..])?;
            if len < 0 {
                return Ok(Some((Element::Other, after)));
            }
            let len = usize::try_from(len).map_err(|_| RespError::Protocol("length"))?;
            if len > MAX_BULK {
                return Err(RespError::Protocol("a bulk string over 16 MiB"));
            }
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::Protocol("a bulk string not ended by CRLF"));
            }
            Ok(Some((Element::Text(after, end), end + 2)))
        }
        b'+' => Ok(Some((Element::Text(at + 1, after - 2), after))),
        b':' | b'-' => Ok(Some((Element::Other, after))),
        _ => Err(RespError::Protocol("an unexpected element type")),
    }
}

/// The line at `at` without its CRLF (never empty) and where the next begins; `None` while
/// incomplete.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[at.min(buf.len())..];
    let window = &rest[..rest.len().min(MAX_LINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(0) => Err(RespError::Protocol("an empty line")),
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() >= MAX_LINE => Err(RespError::Protocol("a line over 4 KiB")),
        None => Ok(None),
    }
}

/// A decimal length, `-1` included.
fn number(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::Protocol("not a number"))
}

/// A command in RESP: an array of bulk strings.
pub(super) fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `PING` in RESP.
pub const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to a Redis server.
pub struct RespConn {
    io: Box<dyn Io>,
    buf: BytesMut,
    /// A `PING` is out and unanswered since the last byte.
    pinged: bool,
}

impl RespConn {
    /// Connects to the server of `info` and authenticates as it says.
    ///
    /// # Errors
    /// Connection failures, a refused `AUTH`, or [`SETUP`] passing first.
    pub async fn open(info: &ConnectionInfo) -> Result<RespConn, RespError> {
        tokio::time::timeout(SETUP, Self::setup(info))
            .await
            .map_err(|_| RespError::Timeout("connect", SETUP))?
    }

    async fn setup(info: &ConnectionInfo) -> Result<RespConn, RespError> {
        let io: Box<dyn Io> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => return Err(RespError::Unsupported("TLS")),
        };
        let mut conn = RespConn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            pinged: false,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            auth.extend(settings.username().map(str::as_bytes));
            auth.push(password.as_bytes());
            conn.send(&command(&auth)).await?;
            match conn.reply().await? {
                Some(Reply::Error(e)) => return Err(RespError::Refused(e)),
                Some(_) => {}
                None => return Err(RespError::Protocol("closed during AUTH")),
            }
        }
        Ok(conn)
    }

    /// Writes `bytes` (commands already in RESP).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RespError> {
        Ok(self.io.write_all(bytes).await?)
    }

    /// Writes `parts` one after the other, without joining them first.
    pub async fn send_parts(&mut self, mut parts: &mut [IoSlice<'_>]) -> Result<(), RespError> {
        IoSlice::advance_slices(&mut parts, 0);
        while !parts.is_empty() {
            let n = self.io.write_vectored(parts).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            IoSlice::advance_slices(&mut parts, n);
        }
        Ok(())
    }

    /// The next reply, reading (and pinging a silent Redis) as needed; `None` when Redis closed
    /// the connection.
    ///
    /// # Errors
    /// I/O errors, bytes that are not RESP2, or silence past 2 × [`IDLE`].
    pub(super) async fn reply(&mut self) -> Result<Option<Reply>, RespError> {
        loop {
            if let Some(reply) = parse(&mut self.buf)? {
                return Ok(Some(reply));
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                // Reclaims the front when no reply handed out still shares it, else moves
                // the incomplete reply to a buffer of its own.
                self.buf.reserve(READ_CHUNK);
            }
            // `read_buf` is cancel-safe: a timeout loses no byte.
            match tokio::time::timeout(IDLE, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => self.pinged = false,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if self.pinged => return Err(RespError::Silent),
                Err(_) => {
                    self.send(PING).await?;
                    self.pinged = true;
                }
            }
        }
    }

    /// Bytes buffered and not yet parsed (for tests of the bound).
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
#[path = "resp_tests.rs"]
mod tests;
