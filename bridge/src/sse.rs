//! `GET /api/v1/stream?vehicle=&route=&trip=&bbox=&events=&max_hz=&batch=`: the WebSocket messages as
//! Server-Sent Events (event name = message `type`), for one subscription made from the query
//! (no criterion: every vehicle); it ends when the caller's token expires. A pump task feeds a small bounded channel that the response body
//! drains; a client that stops reading is dropped after the slow-client limit.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::app::{AppState, ShutdownSignal};
use crate::auth::Caller;
use crate::client::{CloseReason, Outgoing};
use crate::error::AppError;
use crate::filter::Criteria;
use crate::grid::Bbox;
use crate::metrics::Gauge;
use crate::pump::{Outlet, pump};
use crate::session::SubSpec;

/// Messages buffered between the pump and the response body.
const CHANNEL: usize = 16;

/// The query string.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    vehicle: Option<String>,
    route: Option<String>,
    trip: Option<String>,
    bbox: Option<String>,
    events: Option<bool>,
    max_hz: Option<f64>,
    batch: Option<bool>,
}

struct ChannelOutlet(mpsc::Sender<Outgoing>);

impl Outlet for ChannelOutlet {
    async fn send_batch(&mut self, msgs: Vec<Outgoing>) -> Result<(), ()> {
        for m in msgs {
            if m.kind == "ping" {
                continue; // WebSocket-only; SSE has its own keep-alive comments
            }
            self.0.send(m).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

fn nonempty(s: Option<String>) -> Option<Arc<str>> {
    s.filter(|s| !s.is_empty()).map(Arc::from)
}

/// Opens the stream.
///
/// # Errors
/// 400 for a malformed query or bbox.
pub async fn handler(
    State(st): State<AppState>,
    caller: Caller,
    signal: Option<Extension<ShutdownSignal>>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let bbox = match q.bbox.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(Bbox::parse(s).map_err(|e| AppError::BadRequest(e.to_string()))?),
        None => None,
    };
    let max_hz = q.max_hz.unwrap_or(1.0);
    if !(max_hz.is_finite() && max_hz > 0.0) {
        return Err(AppError::BadRequest("max_hz must be a number > 0".into()));
    }
    let criteria = Criteria {
        vehicle: nonempty(q.vehicle),
        route: nonempty(q.route),
        trip: nonempty(q.trip),
        bbox,
    };
    let spec = SubSpec {
        criteria,
        states: true,
        events: q.events.unwrap_or(true),
        max_hz,
        batch: q.batch.unwrap_or(false),
    };
    let hub = st.hub.clone();
    let mut session = hub.connect(caller.filter());
    let expiry = caller.expiry();
    session
        .subscribe("stream", spec)
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Outgoing>(CHANNEL);
    let signal = signal.map(|Extension(s)| s);
    tokio::spawn(async move {
        let _gauge = Gauge::hold(&hub.metrics().sse_clients);
        let client = session.client().clone();
        let closed = tx.clone();
        let mut out = ChannelOutlet(tx);
        tokio::select! {
            _ = pump(&client, &mut out, hub.pace(), hub.metrics()) => {}
            () = closed.closed() => {}
            () = ShutdownSignal::wait(signal) => client.close(CloseReason::Shutdown),
            // The token expired: dropping the sender ends the response body.
            () = expiry => {}
        }
        drop(session);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let m = rx.recv().await?;
        Some((Ok(Event::default().event(m.kind).data(m.text)), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
