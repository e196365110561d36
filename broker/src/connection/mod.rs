//! One client connection over any byte stream (TCP, TLS, WebSocket): CONNECT, then one task
//! that reads and handles packets and writes what the router queues on the link.
//!
//! # Layout
//! - `handshake`: CONNECT → CONNACK.
//! - `socket`: the byte stream, its buffers and deadlines, polled as one.
//! - `inbound`: handling each packet the client sends.
//! - `outbound`: encoding what goes to the client.

mod handshake;
mod inbound;
mod outbound;
mod socket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use fleetmq_codec::{BytesMut, DecodeError, Packet, Protocol, encode, reason};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::context::Context;
use crate::link::{ConnLink, Outgoing, RouterMsg, SessionId};
use inbound::{Flow, Inbound};
use socket::{End, ReadBuf, Socket};

/// Runs one connection to completion.
pub fn serve<S>(
    ctx: Arc<Context>,
    stream: S,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    serve_as(ctx, stream, peer, None)
}

/// Runs one connection whose TLS layer verified a client certificate with this CN
/// (docs/security.md#authentication: without a password, the CN is the client's user).
///
/// Not an `async fn`: its arguments would stay in the future for its whole life. The future
/// every connection's task holds is the loop's state and a few pointers: the connection is
/// boxed, and opening and closing are boxed futures that live only while they run.
pub fn serve_as<S>(
    ctx: Arc<Context>,
    stream: S,
    peer: SocketAddr,
    cert_cn: Option<Arc<str>>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.metrics.connections.fetch_add(1, Relaxed);
    ctx.metrics.connections_total.fetch_add(1, Relaxed);
    let opening = Box::pin(open(ctx, stream, peer, cert_cn));
    async move {
        let (ctx, conn) = opening.await;
        if let Some(mut conn) = conn {
            let end = conn.run().await;
            Box::pin(conn.close(end)).await;
        }
        finish(&ctx);
    }
}

/// An accepted connection: its socket, its link to the router and its protocol state.
struct Connection<S> {
    ctx: Arc<Context>,
    peer: SocketAddr,
    session: SessionId,
    link: ConnLink,
    socket: Socket<S>,
    inbound: Inbound,
    outbound: outbound::Outbound,
    /// Keep-alive and write deadlines.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// `--max-publish-rate`, when set (boxed: unset, it costs a pointer per connection).
    publish_budget: Option<Box<crate::limits::TokenBucket>>,
}

/// How the connection loop ended.
struct Ending {
    publish_will: bool,
    /// v5: the session expiry the client's DISCONNECT set.
    expiry_update: Option<u32>,
    /// A DISCONNECT reason and string for the client (v5), when the broker closes.
    farewell: Option<(u8, &'static str)>,
}

/// The instant a token expiring at Unix second `exp` ends the connection (at once when it is
/// already past: the 30 s leeway of the check at CONNECT is for clock skew, not extra time).
fn token_deadline(exp: Option<u64>) -> Option<Instant> {
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(exp?);
    let left = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + left)
}

/// CONNECT to CONNACK; `None` when the connection ended there (refused, malformed, gone).
async fn open<S>(
    ctx: Arc<Context>,
    mut stream: S,
    peer: SocketAddr,
    cert_cn: Option<Arc<str>>,
) -> (Arc<Context>, Option<Box<Connection<S>>>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut rb = ReadBuf::default();
    let deadline = Instant::now() + ctx.limits.connect_timeout;
    let first = tokio::select! {
        r = read_connect(&ctx, &mut stream, &mut rb, deadline) => r,
        _ = ctx.shutdown.cancelled() => Err(End::Closed),
    };
    let connect = match first {
        Ok(Packet::Connect(c)) => c,
        Ok(_) => {
            tracing::debug!(%peer, "first packet was not CONNECT");
            ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
            return (ctx, None);
        }
        Err(End::Decode(DecodeError::UnsupportedProtocol(level))) => {
            tracing::debug!(%peer, level, "unsupported protocol level");
            // A 3.1.1-shaped CONNACK with "unacceptable protocol version", as Mosquitto answers.
            let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return (ctx, None);
        }
        Err(e) => {
            tracing::debug!(%peer, reason = ?e, "connection ended before CONNECT");
            if matches!(e, End::Decode(_)) {
                ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
            }
            return (ctx, None);
        }
    };
    let protocol = connect.protocol;
    let client_max = connect
        .properties
        .maximum_packet_size
        .map_or(usize::MAX, |m| m as usize);
    let accepted = match login(&ctx, connect, peer, cert_cn.as_deref()).await {
        Ok(a) => a,
        Err(refusal) => {
            let mut out = BytesMut::new();
            let mut connack = refusal.connack();
            if refusal.protocol == Protocol::V5 {
                inbound::fit_diagnostics(&mut connack, client_max, true);
            }
            let _ = encode(&connack, refusal.protocol, &mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return (ctx, None);
        }
    };
    tracing::debug!(%peer, client = %accepted.client_id, ?protocol, "connected");
    let session = accepted.session;
    let keep_alive = Duration::from_millis(u64::from(accepted.keep_alive) * 1500);
    let mut socket = Socket::new(stream, rb, keep_alive);
    socket.set_token_deadline(token_deadline(accepted.identity.expires_at));
    let _ = encode(
        &Packet::ConnAck(accepted.connack),
        protocol,
        &mut socket.out,
    );
    // The router sends nothing before this: CONNACK is the first packet out.
    let _ = ctx
        .router
        .send(RouterMsg::ConnAckSent {
            session,
            conn: accepted.link.id,
        })
        .await;
    let conn = Box::new(Connection {
        inbound: Inbound::new(
            ctx.clone(),
            protocol,
            session,
            accepted.identity,
            accepted.expiry_interval,
            accepted.client_max_packet,
            accepted.problem_information,
        ),
        outbound: outbound::Outbound::new(
            protocol,
            session,
            accepted.client_alias_max,
            accepted.client_max_packet,
            accepted.problem_information,
        ),
        peer,
        session,
        link: accepted.link,
        socket,
        timer: Box::pin(tokio::time::sleep_until(
            Instant::now() + Duration::from_secs(86400 * 365),
        )),
        publish_budget: ctx
            .guard
            .publish_bucket(std::time::Instant::now())
            .map(Box::new),
        ctx: ctx.clone(),
    });
    (ctx, Some(conn))
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection<S> {
    /// Handles packets until the client leaves, breaks the protocol or goes silent, or the
    /// router closes the link.
    async fn run(&mut self) -> Ending {
        let mut ending = Ending {
            publish_will: true,
            expiry_update: None,
            farewell: None,
        };
        loop {
            let (ctx, peer) = (&self.ctx, self.peer);
            // Only `()` crosses the wait for the next packet; the packet is decoded after it
            // and moved into the boxed handler, so no packet-sized slot lives in this (every
            // idle connection's) future.
            let handling = {
                let next = std::future::poll_fn(|cx| {
                    self.socket.poll_next(
                        cx,
                        ctx,
                        &self.link,
                        &mut self.outbound,
                        self.timer.as_mut(),
                    )
                })
                .await
                .and_then(|()| {
                    self.socket
                        .take_packet(self.outbound.protocol, ctx.limits.max_packet_size)
                });
                match next {
                    Ok(Packet::Publish(_))
                        if self
                            .publish_budget
                            .as_mut()
                            .is_some_and(|b| !b.take(std::time::Instant::now())) =>
                    {
                        tracing::debug!(%peer, "publish rate exceeded");
                        ctx.metrics.publish_rate_exceeded.fetch_add(1, Relaxed);
                        ending.farewell =
                            Some((reason::MESSAGE_RATE_TOO_HIGH, "publish rate exceeded"));
                        return ending;
                    }
                    Ok(packet) => {
                        let awaited = self.outbound.acknowledged(&packet);
                        self.inbound.handle(packet, awaited)
                    }
                    Err(End::Decode(e)) => {
                        ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, error = %e, "malformed packet");
                        ending.farewell = Some((e.reason_code(), decode_message(&e)));
                        return ending;
                    }
                    Err(End::TokenExpired) => {
                        tracing::debug!(%peer, "token expired");
                        ending.farewell = Some((reason::MAXIMUM_CONNECT_TIME, "the token expired"));
                        return ending;
                    }
                    Err(End::KeepAlive) => {
                        tracing::debug!(%peer, "keep-alive timeout");
                        ending.farewell = Some((reason::KEEP_ALIVE_TIMEOUT, "keep-alive timeout"));
                        return ending;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, reason = ?e, "connection closed");
                        return ending;
                    }
                }
            };
            let flow = handling.finish().await;
            self.inbound.replies_into(&mut self.socket.out);
            match flow {
                Flow::Continue => {}
                Flow::Reauthenticated { expires_at } => {
                    self.socket.set_token_deadline(token_deadline(expires_at));
                }
                Flow::Disconnected { will, expiry } => {
                    ending.publish_will = will;
                    ending.expiry_update = expiry;
                    return ending;
                }
                Flow::Violation { code, message } => {
                    ctx.metrics.protocol_errors.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, code, message, "protocol violation");
                    ending.farewell = Some((code, message));
                    return ending;
                }
            }
        }
    }

    /// Detaches from the router, says goodbye if there is a reason to, and closes.
    async fn close(mut self: Box<Self>, ending: Ending) {
        let ctx = self.ctx.clone();
        // Later deliveries are refused; a DISCONNECT the router queued (takeover, shutdown)
        // still goes out.
        let queued = self.link.close_for_good();
        let farewell = ending.farewell.map(|(code, message)| Outgoing::Disconnect {
            reason: code,
            message: Some(message),
        });
        let queued_farewell = queued
            .into_iter()
            .find(|item| matches!(item, Outgoing::Disconnect { .. }));
        if let Some(d) = farewell.or(queued_farewell) {
            self.outbound.put(&ctx, d, &mut self.socket.out);
        }
        // Closed by the router (takeover, shutdown) the session is not ours to detach any
        // more; the router ignores a Disconnect from a replaced connection.
        let _ = ctx
            .router
            .send(RouterMsg::Disconnect {
                session: self.session,
                conn: self.link.id,
                publish_will: ending.publish_will,
                expiry_interval: ending.expiry_update,
            })
            .await;
        // Vehicles this connection spoke for go offline; not when the session was taken
        // over by a new connection, which is the same driver coming back.
        let offline = if self.link.is_taken_over() {
            Vec::new()
        } else if let Some(leases) = ctx.leases.get() {
            // `--cluster`: also flushes their trackers and releases their leases.
            leases.disconnected(self.inbound.vehicles()).await
        } else {
            ctx.ingest.disconnected(self.inbound.vehicles())
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
        self.socket.finish(Duration::from_secs(1)).await;
    }
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

/// Reads until the first packet is whole, or the connect timeout passes.
async fn read_connect<R: AsyncRead + Unpin>(
    ctx: &Context,
    rd: &mut R,
    rb: &mut ReadBuf,
    deadline: Instant,
) -> Result<Packet, End> {
    loop {
        if let Some(p) = rb.decode(Protocol::V5, ctx.limits.max_packet_size)? {
            return Ok(p);
        }
        let room = rb.reserve();
        match tokio::time::timeout_at(deadline, rd.read_buf(&mut rb.buf)).await {
            Err(_) => return Err(End::KeepAlive),
            Ok(Ok(0)) => return Err(End::Closed),
            Ok(Ok(n)) => {
                rb.hot = n == room;
                ctx.metrics.bytes_received.fetch_add(n as u64, Relaxed);
            }
            Ok(Err(_)) => return Err(End::Io),
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
        let mut inbound = Inbound::new(
            ctx.clone(),
            Protocol::V5,
            SessionId(1),
            Arc::new(crate::auth::Identity::default()),
            0,
            usize::MAX,
            true,
        );
        let publish = fleetmq_codec::Publish {
            dup: false,
            qos: fleetmq_codec::QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            pkid: 0,
            properties: Default::default(),
            payload: Default::default(),
        };
        assert!(matches!(
            inbound.publish(publish),
            inbound::Handling::Done(Flow::Continue)
        ));
        let (a, _b) = tokio::io::duplex(64);
        let fut = serve(ctx, a, "127.0.0.1:1".parse().unwrap());
        eprintln!(
            "serve {} Connection {}",
            std::mem::size_of_val(&fut),
            std::mem::size_of::<Connection<tokio::io::DuplexStream>>()
        );
        // The future every connection's task holds, and the boxed `Connection` beside it.
        assert!(
            std::mem::size_of_val(&fut) <= 512,
            "serve future {}",
            std::mem::size_of_val(&fut)
        );
        assert!(std::mem::size_of::<Connection<tokio::io::DuplexStream>>() <= 640);
    }
}
