//! The cluster bus's receiving connection on one Redis server (`--redis`): a socket of its own in
//! `SUBSCRIBE` mode, read by a small RESP2 reader of ours. Publishing, and every other Redis
//! command, stays on redis-rs.
//!
//! Why not redis-rs's `aio::PubSub`: its `combine`-based decoder cost ~3,300 instructions per
//! processed update in a three-node cluster (each update is received by two nodes; callgrind,
//! bench/RESULTS.md session 18), the largest single part of what a node spends taking in the
//! others' outputs, and it copied every payload once more. Here a message is cut out of the
//! read buffer as [`Bytes`] without a copy.
//!
//! # Limits
//! - A message's channel and payload at most [`MAX_BULK`] bytes each, a reply's header line at
//!   most [`MAX_LINE`]. Anything longer, or bytes that are not a RESP2 reply, end the connection
//!   with an error (logged): the bus subscribes again with backoff.
//! - The read buffer holds at most one incomplete reply plus [`READ_CHUNK`]. Messages handed
//!   out share the buffer they were read into, so what the bus's inbox holds pins at most the
//!   bytes received for it plus one chunk.
//! - Liveness: after [`IDLE`] without a byte from Redis the reader sends a `PING`; when another
//!   [`IDLE`] passes without one the connection counts as lost (the stream ends), so a Redis
//!   that vanished without closing the socket is noticed within 2 × [`IDLE`].
//! - Setting up (connect, `AUTH`, the confirmation of every channel) takes at most [`SETUP`].

use std::collections::VecDeque;
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
/// Longest connect + `AUTH` + `SUBSCRIBE` confirmation.
pub const SETUP: Duration = Duration::from_secs(3);
/// Messages that may arrive before every channel's confirmation, kept for the stream.
const EARLY: usize = 256;

/// Why a subscribing connection could not be made or ended.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("redis subscriber: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis subscriber: not a RESP2 reply: {0}")]
    Protocol(&'static str),
    #[error("redis subscriber: redis answered {0}")]
    Refused(String),
    #[error("redis subscriber: {0} within {SETUP:?}")]
    Timeout(&'static str),
    #[error("redis subscriber: no reply to PING within {IDLE:?}")]
    Silent,
    #[error("redis subscriber: {0} is not supported for the cluster bus")]
    Unsupported(&'static str),
}

/// What Redis sends a subscribed connection, as far as the bus cares.
#[derive(Debug, PartialEq)]
enum Reply {
    /// A publication: (channel, payload).
    Message(Bytes, Bytes),
    /// A channel's `subscribe` confirmation.
    Subscribed,
    /// An error reply, `-ERR ...`.
    Error(String),
    /// Anything else (`+OK` of `AUTH`, `pong`, `unsubscribe`).
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
fn parse(buf: &mut BytesMut) -> Result<Option<Reply>, SubscriberError> {
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
                    return Err(SubscriberError::Protocol(
                        "a message without channel or payload",
                    ));
                }
            },
            Some(b"subscribe") => Reply::Subscribed,
            _ => Reply::Other,
        },
        _ => Reply::Other,
    }))
}

/// Where the reply at the front of `buf` lies; `None` while incomplete.
fn scan(buf: &[u8]) -> Result<Option<Scanned>, SubscriberError> {
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
            let n = usize::try_from(n).map_err(|_| SubscriberError::Protocol("array length"))?;
            if n > elements.len() {
                return Err(SubscriberError::Protocol(
                    "an array of more than 4 elements",
                ));
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
        _ => Err(SubscriberError::Protocol("unknown reply type")),
    }
}

/// One element of an array at `at`: a bulk string's bytes, or a scalar; and where it ends.
fn element(buf: &[u8], at: usize) -> Result<Option<(Element, usize)>, SubscriberError> {
    let Some((line, after)) = line(buf, at)? else {
        return Ok(None);
    };
    match line[0] {
        b'$' => {
            let len = number(&line[1..])?;
            if len < 0 {
                return Ok(Some((Element::Other, after)));
            }
            let len = usize::try_from(len).map_err(|_| SubscriberError::Protocol("length"))?;
            if len > MAX_BULK {
                return Err(SubscriberError::Protocol("a bulk string over 16 MiB"));
            }
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(SubscriberError::Protocol("a bulk string not ended by CRLF"));
            }
            Ok(Some((Element::Text(after, end), end + 2)))
        }
        b'+' => Ok(Some((Element::Text(at + 1, after - 2), after))),
        b':' | b'-' => Ok(Some((Element::Other, after))),
        _ => Err(SubscriberError::Protocol("an unexpected element type")),
    }
}

/// The line at `at` without its CRLF (never empty) and where the next begins; `None` while
/// incomplete.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, SubscriberError> {
    let rest = &buf[at.min(buf.len())..];
    let window = &rest[..rest.len().min(MAX_LINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(0) => Err(SubscriberError::Protocol("an empty line")),
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() >= MAX_LINE => Err(SubscriberError::Protocol("a line over 4 KiB")),
        None => Ok(None),
    }
}

/// A decimal length, `-1` included.
fn number(digits: &[u8]) -> Result<i64, SubscriberError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(SubscriberError::Protocol("not a number"))
}

/// A command in RESP: an array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection subscribed to the bus's channels.
pub struct Subscription {
    io: Box<dyn Io>,
    buf: BytesMut,
    /// Messages that came before the last confirmation.
    early: VecDeque<(Bytes, Bytes)>,
    /// A `PING` is out and unanswered since the last byte.
    pinged: bool,
}

impl Subscription {
    /// Connects to the server of `info`, authenticates as it says, and subscribes to
    /// `channels`; returns once Redis confirmed every channel.
    ///
    /// # Errors
    /// Connection failures, a refused `AUTH` or `SUBSCRIBE`, or [`SETUP`] passing first.
    pub async fn open(
        info: &ConnectionInfo,
        channels: &[String],
    ) -> Result<Subscription, SubscriberError> {
        tokio::time::timeout(SETUP, Self::setup(info, channels))
            .await
            .map_err(|_| SubscriberError::Timeout("connect and subscribe"))?
    }

    async fn setup(
        info: &ConnectionInfo,
        channels: &[String],
    ) -> Result<Subscription, SubscriberError> {
        let io: Box<dyn Io> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => return Err(SubscriberError::Unsupported("TLS")),
        };
        let mut sub = Subscription {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            early: VecDeque::new(),
            pinged: false,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            auth.extend(settings.username().map(str::as_bytes));
            auth.push(password.as_bytes());
            sub.io.write_all(&command(&auth)).await?;
            match sub.reply().await? {
                Some(Reply::Error(e)) => return Err(SubscriberError::Refused(e)),
                Some(_) => {}
                None => return Err(SubscriberError::Protocol("closed during AUTH")),
            }
        }
        let mut subscribe: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        subscribe.extend(channels.iter().map(|c| c.as_bytes()));
        sub.io.write_all(&command(&subscribe)).await?;
        let mut confirmed = 0;
        while confirmed < channels.len() {
            match sub.reply().await? {
                Some(Reply::Subscribed) => confirmed += 1,
                Some(Reply::Error(e)) => return Err(SubscriberError::Refused(e)),
                Some(Reply::Message(channel, payload)) if sub.early.len() < EARLY => {
                    sub.early.push_back((channel, payload));
                }
                Some(Reply::Message(..)) => {
                    return Err(SubscriberError::Protocol(
                        "messages before the confirmations",
                    ));
                }
                Some(Reply::Other) => {}
                None => return Err(SubscriberError::Protocol("closed during SUBSCRIBE")),
            }
        }
        Ok(sub)
    }

    /// The next message: (channel, payload); `Ok(None)` when Redis closed the connection.
    ///
    /// # Errors
    /// I/O errors, bytes that are not RESP2, an error reply, or silence past 2 × [`IDLE`].
    pub async fn next(&mut self) -> Result<Option<(Bytes, Bytes)>, SubscriberError> {
        if let Some(m) = self.early.pop_front() {
            return Ok(Some(m));
        }
        loop {
            match self.reply().await? {
                Some(Reply::Message(channel, payload)) => return Ok(Some((channel, payload))),
                Some(Reply::Error(e)) => return Err(SubscriberError::Refused(e)),
                Some(Reply::Subscribed | Reply::Other) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next reply, reading (and pinging a silent Redis) as needed; `None` at the end.
    async fn reply(&mut self) -> Result<Option<Reply>, SubscriberError> {
        loop {
            if let Some(reply) = parse(&mut self.buf)? {
                return Ok(Some(reply));
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                // Reclaims the front when no message handed out still shares it, else
                // moves the incomplete reply to a buffer of its own.
                self.buf.reserve(READ_CHUNK);
            }
            // `read_buf` is cancel-safe: a timeout loses no byte.
            match tokio::time::timeout(IDLE, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(_)) => self.pinged = false,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if self.pinged => return Err(SubscriberError::Silent),
                Err(_) => {
                    self.io.write_all(&command(&[b"PING"])).await?;
                    self.pinged = true;
                }
            }
        }
    }

    /// Bytes buffered and not yet parsed (for tests of the bound).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
#[path = "subscriber_tests.rs"]
mod tests;
