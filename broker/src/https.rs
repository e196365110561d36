//! `--https`: the HTTP bridge (REST, SSE, WebSocket, MQTT over WebSocket) over TLS, with the
//! certificate of `--tls-cert`/`--tls-key`.
//!
//! The bridge's server loop serves any axum `Listener`; here a [`TlsListener`] is one. Its own accept task hands each TCP connection to a task of its own for the
//! handshake (under [`tls::HANDSHAKE_TIMEOUT`], never in the accept loop), and completed TLS
//! streams reach axum through a bounded channel. Clients keep their real address
//! (`ConnectInfo`), so per-IP limits and logs stay meaningful for WSS clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::tls;

/// TLS handshakes in progress at once; more connections are closed until one finishes.
const MAX_HANDSHAKES: usize = 1024;

/// Completed handshakes waiting for axum to pick them up.
const READY_QUEUE: usize = 256;

/// A listener whose connections have completed their TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task ended (shutdown): nothing will come any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl TlsListener {
    /// Starts accepting on `listener`; handshakes run until `shutdown`.
    pub fn start(
        ctx: Arc<Context>,
        listener: TcpListener,
        acceptor: TlsAcceptor,
        shutdown: CancellationToken,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(ctx, listener, acceptor, tx, shutdown));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    ctx: Arc<Context>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "https accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !ctx.guard.allow_connect(peer.ip(), Instant::now()) {
            tracing::debug!(%peer, "https connect rate exceeded; closing");
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TLS handshakes in progress; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let result = tokio::select! {
                r = handshake => r,
                _ = shutdown.cancelled() => return,
            };
            drop(permit);
            match result {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "https handshake failed"),
                Err(_) => tracing::debug!(%peer, "https handshake timed out"),
            }
        });
    }
}
