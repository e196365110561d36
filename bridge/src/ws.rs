//! `GET /ws`: the WebSocket bridge of docs/http-api.md#websocket-protocol. The reader applies
//! `subscribe`/`unsubscribe` requests to the session (errors are replied and the connection stays
//! open; at most a burst of 20 and 10 per second after it, else `RATE_LIMITED`); the writer pumps
//! the client's coalesced queue; a slow client is closed with 1013, all clients with 1001 on
//! shutdown. The server pings every client periodically and drops one that has been silent (no pong
//! either) for the idle timeout.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use crate::app::{AppState, ShutdownSignal};
use crate::auth::Caller;
use crate::client::{CloseReason, Outgoing};
use crate::hub::Hub;
use crate::metrics::Gauge;
use crate::protocol::{Op, ProtoError, parse};
use crate::pump::{Ending, Outlet, pump};
use crate::session::Session;

/// Read buffer per connection. tungstenite's default (128 KiB, allocated and zeroed at the
/// upgrade) made an idle watcher cost ~139 KB; clients only send small subscribe requests, and a
/// larger frame still arrives whole (the buffer grows for it and shrinks back when it is taken).
pub const READ_BUFFER: usize = 1024;
/// Bytes buffered before tungstenite writes on its own; the writer also flushes once per batch.
/// A threshold, not an allocation: the write buffer grows only while a batch is being written.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// Close code for a client that could not keep up ("try again later").
pub const CLOSE_SLOW: u16 = 1013;
/// Close code on server shutdown ("going away").
pub const CLOSE_SHUTDOWN: u16 = 1001;
/// Close code when the client's token expires ("policy violation", docs/security.md).
pub const CLOSE_EXPIRED: u16 = 1008;

/// Upgrades the request and runs the client.
pub async fn handler(
    State(st): State<AppState>,
    caller: Caller,
    signal: Option<Extension<ShutdownSignal>>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = st.config.ws_max_message;
    let session = st.hub.connect(caller.filter());
    let expiry = caller.expiry();
    let hub = st.hub.clone();
    let keepalive = (st.config.ws_ping_interval, st.config.ws_idle_timeout);
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            run(
                hub,
                session,
                socket,
                keepalive,
                signal.map(|Extension(s)| s),
                expiry,
            )
        })
}

struct WsOutlet<'a>(&'a mut SplitSink<WebSocket, Message>);

impl Outlet for WsOutlet<'_> {
    async fn send_batch(&mut self, msgs: Vec<Outgoing>) -> Result<(), ()> {
        for m in msgs {
            let frame = if m.kind == PING {
                Message::Ping(Bytes::new())
            } else {
                Message::Text(m.text.into())
            };
            self.0.feed(frame).await.map_err(|_| ())?;
        }
        self.0.flush().await.map_err(|_| ())
    }
}

/// The `kind` of the control message that the outlet turns into a WebSocket ping.
const PING: &str = "ping";

async fn run(
    hub: Hub,
    mut session: Session,
    socket: WebSocket,
    keepalive: (Duration, Duration),
    signal: Option<ShutdownSignal>,
    expiry: impl std::future::Future<Output = ()>,
) {
    let _gauge = Gauge::hold(&hub.metrics().ws_clients);
    let slow = hub.config().slow_client_timeout;
    let client = session.client().clone();
    let (mut tx, mut rx) = socket.split();
    let start = Instant::now();
    // Milliseconds after `start` when the peer last sent anything (pongs included).
    let last_seen = AtomicU64::new(0);
    let since_start = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let pinger = async {
        let (every, idle) = keepalive;
        let mut tick =
            tokio::time::interval_at(start + every, every.max(Duration::from_millis(10)));
        loop {
            tick.tick().await;
            let quiet = since_start().saturating_sub(last_seen.load(Ordering::Relaxed));
            if Duration::from_millis(quiet) > idle {
                tracing::debug!(client = client.id, "dropping a silent WebSocket client");
                return;
            }
            client.send_control(Outgoing {
                kind: PING,
                text: String::new(),
            });
        }
    };
    let reader = async {
        let mut budget = RequestBudget::new(Instant::now());
        while let Some(Ok(msg)) = rx.next().await {
            last_seen.store(since_start(), Ordering::Relaxed);
            match msg {
                Message::Text(_) if !budget.take(Instant::now()) => client.send_control(
                    ProtoError::new("RATE_LIMITED", "too many requests; slow down").to_outgoing(),
                ),
                Message::Text(t) => handle(&mut session, t.as_str()),
                Message::Binary(_) => client.send_control(
                    ProtoError::new(
                        "BAD_REQUEST",
                        "binary frames are not accepted; send JSON text",
                    )
                    .to_outgoing(),
                ),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    };
    let mut outlet = WsOutlet(&mut tx);
    let ending = tokio::select! {
        () = reader => Ending::Gone,
        () = pinger => Ending::Gone,
        e = pump(&client, &mut outlet, hub.pace(), hub.metrics()) => e,
        () = ShutdownSignal::wait(signal) => Ending::Closed(CloseReason::Shutdown),
        () = expiry => Ending::Closed(CloseReason::Expired),
    };
    let frame = match ending {
        Ending::Closed(CloseReason::Slow) => Some(CloseFrame {
            code: CLOSE_SLOW,
            reason: "too slow: try again later".into(),
        }),
        Ending::Closed(CloseReason::Shutdown) => Some(CloseFrame {
            code: CLOSE_SHUTDOWN,
            reason: "server shutting down".into(),
        }),
        Ending::Closed(CloseReason::Expired) => Some(CloseFrame {
            code: CLOSE_EXPIRED,
            reason: "token expired".into(),
        }),
        Ending::Gone => None,
    };
    if let Some(frame) = frame {
        // The peer may be the slow one: bound the wait for the close frame to get out.
        let _ = tokio::time::timeout(slow, tx.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(slow, tx.close()).await;
    drop(session);
}

/// Requests a client may make in a burst, and per second after it: subscribing builds a snapshot,
/// so a client must not be able to make the server do that without bound.
const REQUEST_BURST: f64 = 20.0;
const REQUESTS_PER_SEC: f64 = 10.0;

/// A token bucket over a connection's requests.
struct RequestBudget {
    tokens: f64,
    at: Instant,
}

impl RequestBudget {
    fn new(now: Instant) -> RequestBudget {
        RequestBudget {
            tokens: REQUEST_BURST,
            at: now,
        }
    }

    /// Takes one request's token; false when the client is over its rate.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * REQUESTS_PER_SEC;
        self.tokens = (self.tokens + refill).min(REQUEST_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Applies one text frame to the session.
fn handle(session: &mut Session, text: &str) {
    let result = match parse(text) {
        Ok(Op::Subscribe { id, spec }) => session
            .subscribe(&id, spec)
            .map_err(|e| ProtoError::new("TOO_MANY_SUBSCRIPTIONS", e.to_string())),
        Ok(Op::Unsubscribe { id }) => {
            if session.unsubscribe(&id) {
                Ok(())
            } else {
                Err(ProtoError::new(
                    "NOT_SUBSCRIBED",
                    format!("no subscription {id:?}"),
                ))
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        session.client().send_control(e.to_outgoing());
    }
}
