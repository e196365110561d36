//! The seam between the bridge and the broker: what the bridge asks of the broker ([`BrokerPort`]),
//! the byte stream it hands over for MQTT over WebSocket ([`MqttIo`]), and what an authenticated
//! HTTP client may access ([`Access`]).
//!
//! The bridge knows nothing of MQTT internals; everything MQTT-shaped goes through this trait.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// One live node of the cluster, as `GET /api/v1/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterNode {
    /// The node's `--node-id` (`local` outside a cluster).
    pub id: String,
    /// Its MQTT listener, `IP:PORT`, as bound.
    pub mqtt: String,
    /// Its HTTP listener, `IP:PORT`, as bound.
    pub http: String,
    /// When it started, Unix ms.
    pub started_at: i64,
    /// Its last heartbeat, Unix ms.
    pub last_seen: i64,
    /// Open MQTT connections on it.
    pub connections: u64,
    /// Vehicles it processes.
    pub vehicles: u64,
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

/// A vehicle's next stops as its tracker sees them ([`BrokerPort::upcoming_stops`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UpcomingStops {
    /// The route and trip of the tracker's latest state, which the stops are of.
    pub route: Option<Arc<str>>,
    pub trip: Option<Arc<str>>,
    /// Nearest first.
    pub stops: Vec<geo_engine::NextStop>,
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
    /// Whether the client may read one stored fix of `vehicle` (`/track`) made while the vehicle
    /// ran `route` and `trip`: a rider of a trip reads that trip's fixes only, and only until
    /// the trip ended `--trip-ttl` ago. Defaults to [`Access::may_read_vehicle`].
    fn may_read_fix(&self, vehicle: &str, route: Option<&str>, trip: Option<&str>) -> bool {
        self.may_read_vehicle(vehicle, route, trip)
    }
    /// When the client's rights end (its token's `exp`): WebSocket streams close with 1008 and
    /// SSE streams end then. `None`: never.
    fn expires_at(&self) -> Option<std::time::SystemTime> {
        None
    }
    /// Whether the client may post `vehicle`'s location (`POST /api/v1/vehicles/{id}/location`):
    /// the rights of an MQTT publish to `fleet/{vehicle}/location` (a driver only for its own
    /// vehicle, operators for any). Nobody by default.
    fn may_post_location(&self, vehicle: &str) -> bool {
        let _ = vehicle;
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

    fn may_post_location(&self, _: &str) -> bool {
        true
    }
}

/// What an accepted location post came to (`202 {"accepted":N,"rejected":M}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Fixes that passed validation (forwarded, or dropped as duplicate or jitter).
    pub accepted: usize,
    /// Fixes of a batch that validation rejected (the others still count).
    pub rejected: usize,
}

/// Why a location post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The payload is invalid: 400 `INVALID` naming the field (`lat`, `ts`, `payload`, ...).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, as in the PUBACK reason string of an MQTT publish.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// More fixes in one batch than the broker takes: 413.
    #[error("{0}")]
    TooLarge(String),
    /// Over the per-vehicle publish rate: 429 with `Retry-After`.
    #[error("over the publish rate of this vehicle; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When the next post would be taken.
        retry_after: Duration,
    },
    /// The broker cannot take it now (shutting down): 503.
    #[error("{0}")]
    Unavailable(String),
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

    /// Processed fixes of `q.vehicle` from the broker's history store (docs/history.md),
    /// oldest first, as JSON rows (`vehicle`, `ts`, `lat`, `lon`, ... in Unix ms). `None` means "no
    /// history store"; the bridge then answers from [`BrokerPort::track`] or its ring and says so.
    fn history(
        &self,
        q: &crate::history::HistoryQuery,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
        let _ = q;
        Box::pin(async { None })
    }

    /// Events (their JSON payloads) from the broker's history store, oldest first; `None` means
    /// "no history store" and the bridge answers from its recent events.
    fn events(
        &self,
        q: &crate::history::EventsQuery,
    ) -> BoxFuture<'static, Option<Result<Vec<serde_json::Value>, PortError>>> {
        let _ = q;
        Box::pin(async { None })
    }

    /// The next `max` stops of `vehicle` with their ETAs (and, on a trip with a timetable, their
    /// scheduled times and predicted delay), nearest first, for `GET /api/v1/vehicles/{id}/stops`,
    /// with the route and trip they are of. `None`: the broker does not know the vehicle or
    /// cannot tell; the bridge then lists the state's `next_stop` alone, as it does when the
    /// route or trip is not the state's (the caller's rights were checked on the state). The
    /// default is `None`. The future owns what it needs (a broker may have to ask its store: in
    /// a cluster, the node that processes the vehicle holds its tracker).
    fn upcoming_stops(
        &self,
        vehicle: &str,
        max: usize,
    ) -> BoxFuture<'static, Option<UpcomingStops>> {
        let _ = (vehicle, max);
        Box::pin(async { None })
    }

    /// The GTFS-Realtime feed `feed` (`vehicle-positions`, `trip-updates` or `alerts`) as
    /// protobuf, or as JSON with `json` (`GET /gtfs-rt/{feed}`, docs/gtfs-realtime.md). `None`: no
    /// such feed (404). The default serves none.
    fn gtfs_rt(&self, feed: &str, json: bool) -> Option<Bytes> {
        let _ = (feed, json);
        None
    }

    /// The live nodes of the cluster (`GET /api/v1/cluster`), the answering node first; a broker
    /// outside a cluster lists itself alone. Answered from memory. The default lists none.
    fn cluster(&self) -> Vec<ClusterNode> {
        Vec::new()
    }

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

    /// Takes one request of `client` (a hash of its bearer token, else of its IP) from its
    /// rate limit: `Err(retry_after)` to refuse it with 429 and `Retry-After`. Called once per
    /// REST request and per SSE or WebSocket stream opened. The default admits everything.
    ///
    /// # Errors
    /// The client is over its rate; the next request is taken after the duration.
    fn admit_request(&self, client: u64) -> Result<(), std::time::Duration> {
        let _ = client;
        Ok(())
    }

    /// Feeds a docs/topics-and-payloads.md#location-updates location payload (one object or a batch
    /// array) for `vehicle` into the same pipeline as an MQTT publish to `fleet/{vehicle}/location`
    /// (`POST /api/v1/vehicles/{id}/location`). The bridge has already checked
    /// [`Access::may_post_location`] and the body size. The default refuses (503): a broker without
    /// HTTP ingest.
    ///
    /// # Errors
    /// [`IngestError`]: invalid payload, batch too large, rate limited, unavailable.
    fn ingest_location(
        &self,
        vehicle: &str,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Ingested, IngestError>> {
        let _ = (vehicle, body);
        Box::pin(async {
            Err(IngestError::Unavailable(
                "location ingest is not available".into(),
            ))
        })
    }
}
