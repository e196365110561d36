//! What every connection shares: the router's channel, metrics, limits, and the shutdown token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{Acl, Authenticator};
use crate::ingest::Ingest;
use crate::limits::Guard;
use crate::link::{ConnId, SessionId};
use crate::metrics::Metrics;
use crate::router::RouterMsg;

/// Protocol limits from the configuration, as connections apply them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_keepalive: u16,
    /// Our Receive Maximum: QoS 2 publishes a client may have unreleased towards us.
    pub receive_maximum: u16,
    pub max_packet_size: usize,
    /// Topic aliases a client may set up towards us.
    pub topic_alias_maximum: u16,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Seconds a 3.1.1 persistent session (clean session 0) outlives its connection
    /// (`--session-expiry-311`); `u32::MAX` never expires.
    pub session_expiry_311: u32,
    /// `--max-retained` / `--max-retained-bytes`: a retained publish that may cross them asks
    /// the router first (`RouterMsg::PublishRetained`).
    pub max_retained: usize,
    pub max_retained_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_keepalive: 65535,
            receive_maximum: 1024,
            max_packet_size: 1024 * 1024,
            topic_alias_maximum: 64,
            connect_timeout: Duration::from_secs(10),
            session_expiry_311: 2 * 3600,
            max_retained: usize::MAX,
            max_retained_bytes: usize::MAX,
        }
    }
}

pub struct Context {
    pub router: mpsc::Sender<RouterMsg>,
    /// Connections report a drained link here (see `Router::ready_sender`).
    pub ready: mpsc::UnboundedSender<(SessionId, ConnId)>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    pub auth: Arc<Authenticator>,
    pub acl: Arc<Acl>,
    pub ingest: Arc<Ingest>,
    /// The Redis store when `--redis` is set (SOS persistence, `/track`, readiness); set once,
    /// before any connection is accepted.
    pub persist: std::sync::OnceLock<Arc<crate::persist::Store>>,
    /// The history store when `--postgres` is set (QoS 1/2 location acks wait for it, the
    /// history API reads it); set once, before any connection is accepted.
    pub history: std::sync::OnceLock<Arc<crate::history::History>>,
    /// With `--cluster`: this node's vehicle leases (a fix is processed only under one); set
    /// once, before any connection is accepted.
    pub leases: std::sync::OnceLock<Arc<crate::cluster::lease::Leases>>,
    /// With `--cluster`: the durable sessions the cluster knows of (a QoS 1/2 publish that may
    /// be queued for one is acknowledged once stored); set once, before any connection.
    pub durable: std::sync::OnceLock<Arc<dyn crate::router::durable::Table>>,
    /// The local SOS log in `--data-dir`; set once by the server, before any connection.
    pub sos_log: std::sync::OnceLock<Arc<crate::sos_log::SosLog>>,
    /// Connect rate, publish rate and failed-login back-off (`limits`).
    pub guard: Guard,
    next_conn: AtomicU64,
}

impl Context {
    // Each argument is a distinct shared service the connections need; the struct is built
    // once, in `server.rs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: mpsc::Sender<RouterMsg>,
        ready: mpsc::UnboundedSender<(SessionId, ConnId)>,
        metrics: Arc<Metrics>,
        limits: Limits,
        shutdown: CancellationToken,
        auth: Arc<Authenticator>,
        acl: Arc<Acl>,
        ingest: Arc<Ingest>,
    ) -> Context {
        Context {
            router,
            ready,
            metrics,
            limits,
            shutdown,
            auth,
            acl,
            ingest,
            persist: std::sync::OnceLock::new(),
            history: std::sync::OnceLock::new(),
            leases: std::sync::OnceLock::new(),
            durable: std::sync::OnceLock::new(),
            sos_log: std::sync::OnceLock::new(),
            guard: Guard::new(0, 0),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Replaces the (unlimited) default limits.
    pub fn with_guard(mut self, guard: Guard) -> Context {
        self.guard = guard;
        self
    }

    /// Whether a client's retained `message` may cross the retained limits: then it goes
    /// through `RouterMsg::PublishRetained` and the router's answer decides its PUBACK. The
    /// router's gauges lag by what is queued to it (at most about `ROUTER_CAPACITY` messages),
    /// hence the margins; far from the limits a retained publish takes the fast path.
    pub fn near_retained_limit(&self, message: &crate::message::Message) -> bool {
        let count = self.metrics.retained.load(Relaxed).max(0) as usize;
        let bytes = self.metrics.retained_bytes.load(Relaxed).max(0) as usize;
        message.retain
            && !message.payload.is_empty()
            && (count.saturating_add(crate::router::ROUTER_CAPACITY) >= self.limits.max_retained
                || bytes.saturating_mul(2) >= self.limits.max_retained_bytes)
    }

    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Relaxed))
    }
}
