//! Accepting TCP connections, with or without TLS: the connection limit, the per-IP connect
//! rate, TCP_NODELAY, and one task per connection.
//!
//! The accept loop does no per-connection work beyond those checks, so a connection storm cannot
//! stall it: in particular the TLS handshake runs in the connection's own task, under
//! [`tls::HANDSHAKE_TIMEOUT`], never in the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::connection;
use crate::context::Context;
use crate::tls;

/// Counts a TLS handshake in progress for as long as it lives.
struct Pending(Arc<AtomicI64>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Accepts until the broker shuts down; with `tls`, each connection first completes a TLS
/// handshake and the client certificate's CN (if any) is passed to authentication.
pub async fn run(
    ctx: Arc<Context>,
    listener: TcpListener,
    max_connections: usize,
    tls: Option<TlsAcceptor>,
) {
    // Handshakes in progress count towards --max-connections too: a TLS storm holds sockets
    // before any of them becomes a connection.
    let handshaking = Arc::new(AtomicI64::new(0));
    let max = i64::try_from(max_connections).unwrap_or(i64::MAX);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if ctx.metrics.connections.load(Relaxed) + handshaking.load(Relaxed) >= max {
            tracing::debug!(%peer, "connection limit reached; closing");
            ctx.metrics.connections_refused.fetch_add(1, Relaxed);
            continue;
        }
        if !ctx.guard.allow_connect(peer.ip(), Instant::now()) {
            tracing::debug!(%peer, "connect rate exceeded; closing");
            ctx.metrics.connections_refused.fetch_add(1, Relaxed);
            continue;
        }
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                tokio::spawn(connection::serve(ctx.clone(), stream, peer));
            }
            Some(acceptor) => {
                handshaking.fetch_add(1, Relaxed);
                let pending = Pending(handshaking.clone());
                tokio::spawn(serve_tls(
                    ctx.clone(),
                    acceptor.clone(),
                    stream,
                    peer,
                    pending,
                ));
            }
        }
    }
}

/// Completes the TLS handshake within its deadline, then serves MQTT over it.
async fn serve_tls(
    ctx: Arc<Context>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    pending: Pending,
) {
    let handshake = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let result = tokio::select! {
        r = handshake => r,
        _ = ctx.shutdown.cancelled() => return,
    };
    drop(pending);
    let stream = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cn = tls::peer_cn(&stream);
    connection::serve_as(ctx, stream, peer, cn).await;
}
