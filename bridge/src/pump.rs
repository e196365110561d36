//! The writer loop shared by WebSocket and SSE clients: takes due batches from a client's queue
//! and sends them, closing the client when a batch cannot be sent within the slow-client limit
//! counted from when its oldest message became due.

use std::time::Duration;

use crate::client::{Batch, Client, CloseReason, Outgoing};
use crate::metrics::{Metrics, inc};

/// Where a client's messages go (a WebSocket sink, an SSE channel).
pub trait Outlet {
    /// Sends the messages in order; `Err` when the peer is gone.
    fn send_batch(&mut self, msgs: Vec<Outgoing>) -> impl Future<Output = Result<(), ()>> + Send;
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closes the client for this reason.
    Closed(CloseReason),
    /// The peer went away.
    Gone,
}

/// Sends the client's messages until it is closed or its peer goes away. A batch that is not sent
/// by `oldest due + slow` means the client has been behind for `slow`: it is closed as slow.
pub async fn pump(
    client: &Client,
    out: &mut impl Outlet,
    slow: Duration,
    metrics: &Metrics,
) -> Ending {
    loop {
        match client.next_batch().await {
            Batch::Close(reason) => return Ending::Closed(reason),
            Batch::Messages { msgs, oldest } => {
                match tokio::time::timeout_at(oldest + slow, out.send_batch(msgs)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(())) => return Ending::Gone,
                    Err(_) => {
                        inc(&metrics.slow_clients_closed);
                        tracing::info!(
                            client = client.id,
                            "closing a client that could not keep up"
                        );
                        client.close(CloseReason::Slow);
                        return Ending::Closed(CloseReason::Slow);
                    }
                }
            }
        }
    }
}
