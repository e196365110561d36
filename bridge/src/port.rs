//! The seam between the bridge and the broker: what the bridge asks of the broker ([`BrokerPort`]),
//! the byte stream it hands over for MQTT over WebSocket ([`MqttIo`]), and what an authenticated
//! HTTP client may access ([`Access`]).
//!
//! The bridge knows nothing of MQTT internals; everything MQTT-shaped goes through this trait.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// A duplex byte stream carrying one MQTT connection (the payload of a WebSocket's binary frames).
pub trait MqttStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T> MqttStream for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

/// The stream handed to [`BrokerPort::serve_mqtt`] for one `GET /mqtt` connection.
pub type MqttIo = Box<dyn MqttStream>;

/// Readiness of the broker, as reported on `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Everything is up: 200.
    Ready,
    /// Serving, but something optional is down (e.g. Redis): still 200, with the reason in the body.
    Degraded(String),
    /// Not able to serve (starting, restoring, shutting down): 503.
    NotReady(String),
}

/// Why the broker could not do what the bridge asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The request itself is unacceptable (bad vehicle id, payload too large): 400.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The broker cannot take it right now (queue full, shutting down, storage down): 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else; logged, hidden from HTTP clients: 500.
    #[error("internal: {0}")]
    Internal(String),
}

/// What one HTTP or WebSocket client may see and do, as the broker decided from its token
/// (docs/http-api.md#authentication). The bridge filters every state, event, list and snapshot
/// through it.
pub trait Access: Send + Sync + 'static {
    /// Whether the client may read `vehicle`'s state and events, given its current route and trip.
    fn may_read_vehicle(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool;
    /// Whether the client may ping `vehicle` (`POST /api/v1/vehicles/{id}/ping`).
    fn may_ping(&self, vehicle: &str) -> bool;
    /// True when `may_read_vehicle` is always true, so the bridge can skip the per-message check.
    fn reads_everything(&self) -> bool {
        false
    }
}

/// Everything allowed: the access of every client while the broker has no authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAccess;

impl Access for OpenAccess {
    fn may_read_vehicle(&self, _: &str, _: Option<&str>, _: Option<&str>) -> bool {
        true
    }

    fn may_ping(&self, _: &str) -> bool {
        true
    }

    fn reads_everything(&self) -> bool {
        true
    }
}

/// Why a request's credentials were refused: 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Authentication is configured and the request carries no token.
    #[error("authentication required: send Authorization: Bearer <token> or ?token=")]
    Missing,
    /// The token is invalid or expired; the text says why (it is sent to the client).
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Implemented by the broker, called by the bridge's HTTP handlers.
///
/// Every method must return promptly: the bridge calls the synchronous ones from request handlers.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use std::sync::Arc;
///
/// use bytes::Bytes;
/// use fleetmq_bridge::{BridgeConfig, BrokerPort, Hub, HubConfig, MqttIo, PortError, Readiness};
/// use futures_util::future::BoxFuture;
///
/// struct NoBroker;
///
/// impl BrokerPort for NoBroker {
///     fn ping(&self, _vehicle: &str, _payload: Bytes) -> Result<(), PortError> {
///         Err(PortError::Unavailable("no broker".into()))
///     }
///     fn serve_mqtt(&self, _io: MqttIo, _peer: SocketAddr) {} // dropping `io` closes it
///     fn write_metrics(&self, out: &mut String) {
///         out.push_str("example_up 1\n");
///     }
///     fn readiness(&self) -> Readiness {
///         Readiness::Degraded("no broker".into())
///     }
///     fn track(&self, _: &str, _: i64, _: i64) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
///         Box::pin(async { None }) // the bridge serves its in-memory ring
///     }
/// }
///
/// let hub = Hub::new(HubConfig::default());
/// let router = fleetmq_bridge::app(hub.clone(), Arc::new(NoBroker), BridgeConfig::default());
/// # drop(router);
/// ```
pub trait BrokerPort: Send + Sync + 'static {
    /// QoS 1 publish of `payload` to `fleet/{vehicle}/ping` (`POST /api/v1/vehicles/{id}/ping` → 202).
    ///
    /// # Errors
    /// [`PortError`] when the broker refuses or cannot queue the message.
    fn ping(&self, vehicle: &str, payload: Bytes) -> Result<(), PortError>;

    /// Serve one MQTT-over-WebSocket connection (`GET /mqtt`, subprotocol `mqtt`): the bridge adapts the
    /// WebSocket's binary frames into a duplex byte stream and hands it over; the broker runs the MQTT
    /// session on it (typically by spawning a task) and drops `io` when the session ends.
    fn serve_mqtt(&self, io: MqttIo, peer: SocketAddr);

    /// Appends the broker's Prometheus metrics (text exposition format) to `out`.
    fn write_metrics(&self, out: &mut String);

    /// Readiness for `/readyz`.
    fn readiness(&self) -> Readiness;

    /// Recent processed fixes of `vehicle` with `from_ms <= ts <= to_ms` from durable storage (Redis
    /// stream) if the broker has one configured; `None` means "not configured" and the bridge serves
    /// its own in-memory ring.
    fn track(
        &self,
        vehicle: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>>;

    /// Authenticates an HTTP or WebSocket request by its bearer token (`Authorization: Bearer` or
    /// `?token=`; `None` without one) and says what the client may access. Called once per
    /// request or WebSocket connection. The default lets everyone read and ping everything, which
    /// is right only for a broker without authentication.
    ///
    /// # Errors
    /// [`AuthError`] to refuse the request with 401.
    fn authenticate(&self, token: Option<&str>) -> Result<Arc<dyn Access>, AuthError> {
        let _ = token;
        Ok(Arc::new(OpenAccess))
    }
}
