//! The broker's resolved configuration. `cli` builds it from flags, `FLEETMQ_*` environment
//! variables, a TOML file and defaults (in that order of precedence); everything else reads it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Everything `fleetmq serve` needs to run. Field defaults are those of
/// docs/configuration.md#settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// MQTT over TCP (3.1.1 and 5.0).
    pub mqtt: SocketAddr,
    /// MQTT over TLS; needs `tls_cert` and `tls_key`.
    pub mqtts: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Turns on client-certificate authentication.
    pub tls_client_ca: Option<PathBuf>,
    /// HTTP: WebSocket bridge, REST, SSE, MQTT over WebSocket, metrics, map page.
    pub http: SocketAddr,
    /// HTTPS with the same certificate as `mqtts`.
    pub https: Option<SocketAddr>,
    /// Route network file (GeoJSON or GTFS zip/folder); `None` uses the bundled Cairns routes.
    pub routes: Option<PathBuf>,
    /// Redis URL for snapshots and restore; `None` keeps state in memory only.
    pub redis: Option<String>,
    /// TTL of each vehicle's state key in Redis.
    pub state_ttl: Duration,
    pub users: Option<PathBuf>,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub acl: Option<PathBuf>,
    /// Longest keep-alive a client may ask for; a v5 client asking for more gets Server Keep Alive.
    pub max_keepalive: u16,
    /// Our Receive Maximum: QoS 1/2 publishes a client may have unacknowledged towards us.
    pub receive_maximum: u16,
    /// Largest packet accepted from (and sent to) a client, bytes.
    pub max_packet_size: u32,
    pub max_connections: usize,
    /// Per-session bound on messages queued for delivery (offline or not yet sent).
    pub max_queued: usize,
    /// `None`: allowed only while no authentication is configured and every listener is on
    /// loopback.
    pub allow_anonymous: Option<bool>,
    /// New connections accepted per IP per second; 0 = unlimited.
    pub max_connect_rate: u32,
    /// PUBLISH packets per client per second; 0 = unlimited (v5 clients exceeding it get 0x96).
    pub max_publish_rate: u32,
    pub log: LogFormat,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mqtt: SocketAddr::from(([127, 0, 0, 1], 1883)),
            mqtts: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https: None,
            routes: None,
            redis: None,
            state_ttl: Duration::from_secs(3600),
            users: None,
            jwt_secret: None,
            jwt_public_key: None,
            acl: None,
            max_keepalive: 65535,
            receive_maximum: 1024,
            max_packet_size: 1024 * 1024,
            max_connections: 1_000_000,
            max_queued: 1000,
            allow_anonymous: None,
            max_connect_rate: 0,
            max_publish_rate: 0,
            log: LogFormat::Pretty,
        }
    }
}
