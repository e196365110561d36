//! The seam between the bridge and the broker: what the bridge asks of the broker ([`BrokerPort`])
//! and the byte stream it hands over for MQTT over WebSocket ([`MqttIo`]).
//!
//! The bridge knows nothing of MQTT internals; everything MQTT-shaped goes through this trait.

use std::net::SocketAddr;

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
}
