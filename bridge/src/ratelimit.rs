//! The request rate limit of REST, SSE and WebSocket (`/api/v1/*`, `/ws`): each request — a
//! stream counts once, when it opens — takes a token from its client's bucket, the client being
//! its bearer token, else its IP address. An empty bucket is a 429 `RATE_LIMITED` with
//! `Retry-After`. The buckets are the broker's ([`BrokerPort::admit_request`]); the bridge only
//! names the client, by a hash so that a long token costs the table no more than an IP.
//!
//! The map page, `/mqtt` (MQTT over WebSocket has the broker's connect and publish rates), the
//! health endpoints and `/metrics` are not limited: a monitor or a load balancer must not be
//! refused because a client behind the same IP misbehaves.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::token;
use crate::error::AppError;
#[cfg(doc)]
use crate::port::BrokerPort;

/// Per-process hash keys: a client cannot pick tokens that collide with another's.
static KEYS: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// Whether `path` is rate limited.
fn limited(path: &str) -> bool {
    path.starts_with("/api/") || path == "/ws"
}

/// The middleware: passes the request on, or answers 429.
pub async fn limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !limited(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // A malformed Authorization header is the handler's 401; the IP stands in for it here.
    let client = match token(&parts).ok().flatten() {
        Some(t) => KEYS.hash_one(("token", t)),
        None => {
            let ip = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            KEYS.hash_one(("ip", ip))
        }
    };
    match st.port.admit_request(client) {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(retry_after) => AppError::RateLimited {
            message: "too many requests from this client; retry later".into(),
            retry_after_s: retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }
        .into_response(),
    }
}
