//! Accepting TCP connections: the connection limit, TCP_NODELAY, and one task per connection.
//! The accept loop does no per-connection work beyond that, so a connection storm cannot stall it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::connection;
use crate::context::Context;

/// Accepts until the broker shuts down.
pub async fn run(ctx: Arc<Context>, listener: TcpListener, max_connections: usize) {
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
        if ctx.metrics.connections.load(Relaxed) >= max_connections as i64 {
            tracing::debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve(ctx.clone(), stream, peer));
    }
}
