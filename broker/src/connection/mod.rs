//! One client connection over any byte stream (TCP, TLS, WebSocket): CONNECT, then a reader
//! that decodes and handles packets and a writer task fed through the connection's link.
//!
//! # Layout
//! - `handshake`: CONNECT → CONNACK.
//! - `link`: the channel between the router and the writer.
//! - `inbound`: handling each packet the client sends.
//! - `writer`: encoding and writing what goes to the client.

mod handshake;
mod inbound;
pub mod link;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fleetmq_codec::{BytesMut, DecodeError, Packet, Protocol, decode, encode, reason};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::context::Context;
use crate::router::RouterMsg;
use inbound::{Flow, Inbound};

/// Bytes reserved for each read; a larger packet grows the buffer up to the maximum packet size.
const READ_CHUNK: usize = 2048;

/// Runs one connection to completion.
pub async fn serve<S>(ctx: Arc<Context>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    serve_as(ctx, stream, peer, None).await;
}

/// Runs one connection whose TLS layer verified a client certificate with this CN (SPEC §9:
/// without a password, the CN is the client's user).
pub async fn serve_as<S>(ctx: Arc<Context>, stream: S, peer: SocketAddr, cert_cn: Option<Arc<str>>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.metrics.connections.fetch_add(1, Relaxed);
    ctx.metrics.connections_total.fetch_add(1, Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut rb = ReadBuf {
        buf: BytesMut::new(),
        hot: false,
    };
    let deadline = Instant::now() + ctx.limits.connect_timeout;
    let first = tokio::select! {
        r = read_packet(&ctx, &mut rd, &mut rb, Protocol::V5, deadline) => r.map(Box::new),
        _ = ctx.shutdown.cancelled() => Err(ReadEnd::Closed),
    };
    let connect = match first.map(|p| *p) {
        Ok(Packet::Connect(c)) => Box::new(c),
        Ok(_) => {
            tracing::debug!(%peer, "first packet was not CONNECT");
            ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
            return finish(&ctx);
        }
        Err(ReadEnd::Decode(DecodeError::UnsupportedProtocol(level))) => {
            tracing::debug!(%peer, level, "unsupported protocol level");
            // A 3.1.1-shaped CONNACK with "unacceptable protocol version", as Mosquitto answers.
            let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return finish(&ctx);
        }
        Err(e) => {
            tracing::debug!(%peer, reason = ?e, "connection ended before CONNECT");
            if matches!(e, ReadEnd::Decode(_)) {
                ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
            }
            return finish(&ctx);
        }
    };
    let protocol = connect.protocol;
    // Boxed sub-futures (here and for each packet below) keep the connection's own future,
    // which every idle connection holds, small: their large states live only while running.
    let accepted = match Box::pin(login(&ctx, *connect, peer, cert_cn.as_deref())).await {
        Ok(a) => a,
        Err(refusal) => {
            let mut out = BytesMut::new();
            let _ = encode(&refusal.connack(), refusal.protocol, &mut out);
            let _ = wr.write_all(&out).await;
            let _ = wr.shutdown().await;
            return finish(&ctx);
        }
    };
    tracing::debug!(%peer, client = %accepted.client_id, ?protocol, "connected");
    let session = accepted.session;
    // Moved, not cloned: every sender must go when the connection ends, or the writer never
    // sees its channel close and the socket lingers.
    let link = accepted.link;
    let writer = writer::Writer::new(
        protocol,
        session,
        link.clone(),
        accepted.client_alias_max,
        accepted.client_max_packet,
    );
    let writer_task = tokio::spawn(writer.run(ctx.clone(), wr, accepted.rx));
    let _ = link
        .tx
        .send(link::Outgoing::Packet(Box::new(Packet::ConnAck(
            accepted.connack,
        ))))
        .await;
    let _ = ctx
        .router
        .send(RouterMsg::Ready {
            session,
            conn: link.id,
        })
        .await;

    let mut inbound = Inbound::new(
        ctx.clone(),
        protocol,
        session,
        link.clone(),
        accepted.identity.clone(),
        accepted.expiry_interval,
    );
    let keep_alive = Duration::from_millis(u64::from(accepted.keep_alive) * 1500);
    let mut publish_will = true;
    let mut expiry_update = None;
    let mut publish_budget = ctx.guard.publish_bucket(std::time::Instant::now());
    loop {
        let deadline = if keep_alive.is_zero() {
            Instant::now() + Duration::from_secs(86400 * 365)
        } else {
            Instant::now() + keep_alive
        };
        let next = tokio::select! {
            r = read_packet(&ctx, &mut rd, &mut rb, protocol, deadline) => r,
            _ = link.close.cancelled() => Err(ReadEnd::Closed),
        };
        if let (Ok(Packet::Publish(_)), Some(budget)) = (&next, publish_budget.as_mut())
            && !budget.take(std::time::Instant::now())
        {
            tracing::debug!(%peer, "publish rate exceeded");
            ctx.metrics.publish_rate_exceeded.fetch_add(1, Relaxed);
            let _ = link.tx.try_send(link::Outgoing::Disconnect {
                reason: reason::MESSAGE_RATE_TOO_HIGH,
                message: Some("publish rate exceeded"),
            });
            break;
        }
        match next {
            Ok(packet) => match Box::pin(inbound.handle(packet)).await {
                Flow::Continue => {}
                Flow::Disconnected { will, expiry } => {
                    publish_will = will;
                    expiry_update = expiry;
                    break;
                }
                Flow::Violation { code, message } => {
                    ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, code, message, "protocol violation");
                    let _ = link.tx.try_send(link::Outgoing::Disconnect {
                        reason: code,
                        message: Some(message),
                    });
                    break;
                }
            },
            Err(ReadEnd::Decode(e)) => {
                ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
                tracing::debug!(%peer, error = %e, "malformed packet");
                let _ = link.tx.try_send(link::Outgoing::Disconnect {
                    reason: e.reason_code(),
                    message: Some(decode_message(&e)),
                });
                break;
            }
            Err(ReadEnd::KeepAlive) => {
                tracing::debug!(%peer, "keep-alive timeout");
                let _ = link.tx.try_send(link::Outgoing::Disconnect {
                    reason: reason::KEEP_ALIVE_TIMEOUT,
                    message: Some("keep-alive timeout"),
                });
                break;
            }
            Err(ReadEnd::Closed) | Err(ReadEnd::Io) => break,
        }
    }
    // Closed by the router (takeover, shutdown) the session is not ours to detach any more;
    // the router ignores a Disconnect from a replaced connection.
    let _ = ctx
        .router
        .send(RouterMsg::Disconnect {
            session,
            conn: link.id,
            publish_will,
            expiry_interval: expiry_update,
        })
        .await;
    // Vehicles this connection spoke for go offline; not when the session was taken over by
    // a new connection, which is the same driver coming back.
    let taken_over = link.taken_over.load(std::sync::atomic::Ordering::SeqCst);
    let offline = if taken_over {
        Vec::new()
    } else {
        ctx.ingest.disconnected(inbound.vehicles())
    };
    for m in offline {
        let _ = ctx
            .router
            .send(RouterMsg::Publish {
                message: m,
                qos2_pkid: None,
            })
            .await;
    }
    // Let the writer flush what is queued (a DISCONNECT, acks) before the socket closes.
    drop(inbound);
    let close = link.close.clone();
    drop(link);
    // The writer ends when every sender is gone or on cancel, and cancels the token itself.
    if tokio::time::timeout(Duration::from_secs(2), close.cancelled())
        .await
        .is_err()
    {
        close.cancel();
    }
    let _ = writer_task.await;
    finish(&ctx);
}

/// The handshake, refused outright while `peer` is backing off after failed logins; refusals
/// for bad credentials count towards that back-off, and a login with credentials clears it.
async fn login(
    ctx: &Context,
    connect: fleetmq_codec::Connect,
    peer: SocketAddr,
    cert_cn: Option<&str>,
) -> Result<handshake::Accepted, handshake::Refusal> {
    let ip = peer.ip();
    let credentials = connect.password.is_some() || cert_cn.is_some();
    if let Some(wait) = ctx.guard.login_blocked(ip, std::time::Instant::now()) {
        tracing::debug!(%peer, ?wait, "refused: backing off after failed logins");
        ctx.metrics.logins_refused.fetch_add(1, Relaxed);
        return Err(handshake::Refusal {
            protocol: connect.protocol,
            code: reason::CONNECTION_RATE_EXCEEDED,
            message: format!(
                "too many failed logins; retry in {} s",
                wait.as_secs().max(1)
            ),
        });
    }
    let result = handshake::accept(ctx, connect, cert_cn).await;
    match &result {
        Err(r)
            if matches!(
                r.code,
                reason::BAD_USER_NAME_OR_PASSWORD | reason::NOT_AUTHORIZED
            ) =>
        {
            ctx.guard.login_failed(ip, std::time::Instant::now());
            ctx.metrics.logins_refused.fetch_add(1, Relaxed);
        }
        Ok(_) if credentials => ctx.guard.login_succeeded(ip),
        _ => {}
    }
    result
}

fn finish(ctx: &Context) {
    ctx.metrics.connections.fetch_sub(1, Relaxed);
}

fn decode_message(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::PacketTooLarge { .. } => "packet exceeds the maximum packet size",
        DecodeError::Malformed(m) | DecodeError::Protocol(m) => m,
        DecodeError::UnsupportedProtocol(_) => "unsupported protocol version",
    }
}

#[derive(Debug)]
enum ReadEnd {
    Decode(DecodeError),
    KeepAlive,
    Closed,
    Io,
}

/// Reads until one whole packet is buffered, or the deadline passes.
/// The read buffer of one connection.
struct ReadBuf {
    buf: BytesMut,
    /// The last read filled all the room it had: more is probably waiting, so keep a full
    /// chunk. Otherwise the socket went quiet and the buffer is released between packets.
    hot: bool,
}

/// Bytes reserved for the first read after a quiet spell: enough for a small packet, little
/// for an idle connection to hold while it waits.
const QUIET_CHUNK: usize = 128;

async fn read_packet<R: AsyncRead + Unpin>(
    ctx: &Context,
    rd: &mut R,
    rb: &mut ReadBuf,
    protocol: Protocol,
    deadline: Instant,
) -> Result<Packet, ReadEnd> {
    loop {
        match decode(&mut rb.buf, protocol, ctx.limits.max_packet_size) {
            Ok(Some(p)) => {
                if rb.buf.is_empty() && !rb.hot {
                    // Nothing buffered and the socket was drained: give the memory back, so
                    // an idle connection holds (almost) no read buffer.
                    rb.buf = BytesMut::new();
                }
                return Ok(p);
            }
            Ok(None) => {}
            Err(e) => return Err(ReadEnd::Decode(e)),
        }
        let chunk = if rb.hot || !rb.buf.is_empty() {
            READ_CHUNK
        } else {
            QUIET_CHUNK
        };
        if rb.buf.capacity() - rb.buf.len() < chunk / 4 {
            rb.buf.reserve(chunk);
        }
        let room = rb.buf.capacity() - rb.buf.len();
        match tokio::time::timeout_at(deadline, rd.read_buf(&mut rb.buf)).await {
            Err(_) => return Err(ReadEnd::KeepAlive),
            Ok(Ok(0)) => return Err(ReadEnd::Closed),
            Ok(Ok(n)) => {
                rb.hot = n == room;
                ctx.metrics.bytes_received.fetch_add(n as u64, Relaxed);
            }
            Ok(Err(_)) => return Err(ReadEnd::Io),
        }
    }
}

#[cfg(test)]
/// Every idle connection holds these futures and channel slots: keep them small (issue 7's
/// memory-per-connection target). Bounds are for the unoptimised test build.
mod footprint {
    use super::*;
    use crate::auth::{Acl, Authenticator};
    use crate::context::Limits;
    use crate::ingest::Ingest;
    use crate::metrics::Metrics;

    #[test]
    fn connection_state_stays_small() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let metrics = Arc::new(Metrics::default());
        let ingest = Arc::new(Ingest::new(
            Arc::new(geo_engine::Network::empty()),
            geo_engine::PipelineConfig::default(),
            vec![],
            metrics.clone(),
        ));
        let ctx = Arc::new(Context::new(
            tx,
            tokio::sync::mpsc::unbounded_channel().0,
            metrics,
            Limits::default(),
            tokio_util::sync::CancellationToken::new(),
            Arc::new(Authenticator::new(None, None, true)),
            Arc::new(Acl::empty()),
            ingest,
        ));
        let (a, _b) = tokio::io::duplex(64);
        let ctx2 = ctx.clone();
        let fut = serve(ctx, a, "127.0.0.1:1".parse().unwrap());
        assert!(
            std::mem::size_of_val(&fut) <= 3 * 1024,
            "serve future {}",
            std::mem::size_of_val(&fut)
        );
        let (ltx, lrx) = tokio::sync::mpsc::channel(1);
        let link = link::ConnLink {
            id: 1,
            tx: ltx,
            want_ready: Default::default(),
            close: Default::default(),
            taken_over: Default::default(),
        };
        let w = writer::Writer::new(Protocol::V5, 1, link, 0, 1000);
        let (c, _d) = tokio::io::duplex(64);
        let (_r, wr) = tokio::io::split(c);
        let wfut = w.run(ctx2, wr, lrx);
        eprintln!("writer future: {}", std::mem::size_of_val(&wfut));
        eprintln!("Outgoing: {}", std::mem::size_of::<link::Outgoing>());
        eprintln!(
            "Session: {}",
            std::mem::size_of::<crate::router::session::Session>()
        );
        eprintln!("Packet: {}", std::mem::size_of::<Packet>());
    }
}
