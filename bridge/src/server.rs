//! The HTTP server loop: accepts connections from any axum [`Listener`] (plain TCP for
//! `--http` and `--osmand`, the broker's TLS listener for `--https`), serves each with hyper's
//! HTTP/1.1 connection (upgrades allowed, for WebSocket), and shuts down gracefully.
//!
//! Why not `axum::serve`: it sets no header-read timeout, so a client that opens a connection
//! and sends its request line one byte a minute (slowloris) holds a socket and a task for as
//! long as it likes. Here hyper gets a timer and [`HEADER_READ_TIMEOUT`]: a request's headers
//! must arrive within it, and an idle keep-alive connection is closed after it too (its next
//! request's headers did not arrive). Streams (SSE, WebSocket) are not affected: once a
//! response or an upgrade has started, no headers are being read.
//!
//! Open connections are capped (`--max-connections`, per listener): at the cap the loop stops
//! accepting, so a new client waits in the kernel's accept queue (and past its backlog, its
//! SYN is dropped and retried) until a connection closes. Nothing is accepted only to be cut,
//! and a socket flood cannot grow the process past its file limit.
//!
//! A request answered before its body was read (413, 408, ...) gets `Connection: close`, and
//! connections close with a lingering close (`linger`): a client still sending that body reads
//! the refusal instead of a connection reset.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension};
use axum::http::Request;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::app::ShutdownSignal;
use crate::linger::{Linger, Watched, close_if_unread};

/// How long a client has to send a request's headers (and an idle keep-alive connection to
/// start its next request) before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`serve`] waits for open requests after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// At most one "connection cap reached" warning per this interval.
const CAP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting (the listener is
/// closed), tells stream clients to close (1001), and waits for open requests (at most 5 s,
/// then their connections are cut). At most `max_connections` are open at once; at the cap the
/// next is accepted when one closes.
/// Handlers see the client's address as `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// None today (accept errors are the listener's to handle, as axum's listeners do); the
/// `Result` keeps the signature of a server that may fail.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    max_connections: usize,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let (stopping_tx, stopping) = watch::channel(false);
    let app = app.layer(Extension(ShutdownSignal(stopping.clone())));
    // Every connection task holds a receiver; `closed()` resolves when the last one is gone.
    let (open_tx, open_rx) = watch::channel(());
    // Set when the grace period is over: connections still open are cut (dropped).
    let (cut_tx, cut) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let slots = Arc::new(Semaphore::new(
        max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A free slot first, then the accept: at the cap, clients wait in the kernel's queue.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= CAP_WARN_EVERY) {
                    tracing::warn!(
                        max_connections,
                        "HTTP connection cap reached; new connections wait until one closes"
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // Never closed; ending the loop is the safe answer if it were.
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let (parts, body) = req.into_parts();
            let (body, ended) = Watched::new(body);
            let mut req = Request::from_parts(parts, Body::new(body));
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let mut response = app.oneshot(req).await?;
                close_if_unread(&mut response, &ended);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let service = TowerToHyperService::new(service);
        let conn = builder
            .serve_connection(TokioIo::new(Linger::new(io)), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        let mut cut = cut.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = stopping.wait_for(|s| *s) => None,
            };
            let ended = match ended {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => r,
                        // Also when `serve` has returned (the sender is gone).
                        _ = cut.wait_for(|c| *c) => Ok(()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::trace!(%peer, error = %e, "http connection ended");
            }
            drop(slot);
            drop(open);
        });
    }
    // Closes the port now (as `axum::serve` does): a new client is refused rather than left
    // in the accept queue, unserved, for the grace period.
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open_rx);
    if tokio::time::timeout(SHUTDOWN_GRACE, open_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP connections still open {SHUTDOWN_GRACE:?} after shutdown; closing them"
        );
        let _ = cut_tx.send(true);
    }
    Ok(())
}
