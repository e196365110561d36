//! The broker's configuration: one declaration per setting, everything else derived from it.
//!
//! [`Config`] is at once the clap arguments of `fleetmq serve` (flag, `FLEETMQ_*` variable, help,
//! value name, heading, the default `--help` shows), the serde struct of the `--config` TOML file
//! (the key is the field name; `deny_unknown_fields`), and the resolved configuration the broker
//! reads. `cli` layers the sources (flag > env > file > default, see `cli::settings`), prints
//! `--print-config` by walking [`Config::declarations`], and its tests check the README's
//! configuration table and `fleetmq.example.toml` against the same list.
//!
//! # Why clap + serde, not figment
//! figment merges serde providers (defaults, a TOML file, prefixed env, CLI arguments) well, but
//! clap already reads the flags and `FLEETMQ_*` variables through our parsers, shows them in
//! `--help`, and reports which ones were given (`ArgMatches::value_source`). What remains is laying
//! the file's table under those, one `Table::extend`. figment would add a second, all-`Option`
//! struct for the CLI layer, an env provider that reads values differently from flags, and errors
//! to translate back into our one-line messages naming the file, key and fix.
//!
//! # Adding a setting
//! 1. Add one field to [`Config`], e.g. a duration with a default:
//!    ```text
//!    /// How long a 3.1.1 persistent session outlives its connection
//!    #[arg(long, env = "FLEETMQ_SESSION_EXPIRY_311", value_name = "DURATION", default_value = "2h",
//!          value_parser = duration::parse, help_heading = "Limits")]
//!    #[serde(with = "duration")]
//!    pub session_expiry_311: Duration,
//!    ```
//!    or one that is off unless given (an `Option`, no `default_value`, the help ending in what
//!    unset means, `[default: off]`):
//!    ```text
//!    /// OsmAnd HTTP tracker endpoint [default: off]
//!    #[arg(long, env = "FLEETMQ_OSMAND", value_name = "ADDR", value_parser = addr::parse,
//!          help_heading = "Listeners")]
//!    #[serde(with = "addr")]
//!    pub osmand: Option<SocketAddr>,
//!    ```
//!    The env name is `FLEETMQ_` and the flag in upper case; the value kind (a module of
//!    [`value`]: `addr`, `path`, `text`, `duration`, `size`, `number` with `number::parse::<T>`,
//!    `decimal` for `f64`, `boolean`, `log_format`; a new kind is a module there) is named twice, as clap's `value_parser` and serde's `with`. Keep
//!    the help to one line (a second paragraph would switch clap to long help for every flag).
//! 2. Add its row to the README configuration table and its commented `# key = default` line to
//!    `fleetmq.example.toml`; `cargo nextest run -p fleetmq docs` names what is missing.
//! 3. Read it where it is used (`config.session_expiry_311`); a rule between settings goes in
//!    `cli::settings::check`.
//!
//! The flag, variable, TOML key, `--print-config` line, `fleetmq demo` flag and docs checks follow.

pub mod value;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};
use value::{addr, boolean, decimal, duration, log_format, number, path, size, text};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Everything `fleetmq serve` needs to run, one field per setting (docs/configuration.md#settings).
/// The doc line of a field is its `--help` text; `//` comments are for readers of the code.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT over TCP, 3.1.1 and 5.0 on one port
    #[arg(long, env = "FLEETMQ_MQTT", value_name = "ADDR", default_value = "127.0.0.1:1883",
          value_parser = addr::parse, help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub mqtt: SocketAddr,

    /// MQTT over TLS; needs --tls-cert and --tls-key [default: off]
    #[arg(long, env = "FLEETMQ_MQTTS", value_name = "ADDR", value_parser = addr::parse,
          help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub mqtts: Option<SocketAddr>,

    /// PEM certificate chain for --mqtts and --https [default: off]
    #[arg(long, env = "FLEETMQ_TLS_CERT", value_name = "FILE", value_parser = path::parse,
          help_heading = "TLS")]
    #[serde(with = "path")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert [default: off]
    #[arg(long, env = "FLEETMQ_TLS_KEY", value_name = "FILE", value_parser = path::parse,
          help_heading = "TLS")]
    #[serde(with = "path")]
    pub tls_key: Option<PathBuf>,

    /// CA whose client certificates are accepted; turns on client-certificate auth [default: off]
    #[arg(long, env = "FLEETMQ_TLS_CLIENT_CA", value_name = "FILE", value_parser = path::parse,
          help_heading = "TLS")]
    #[serde(with = "path")]
    pub tls_client_ca: Option<PathBuf>,

    /// WebSocket bridge, REST, SSE, MQTT over WebSocket, metrics, map
    #[arg(long, env = "FLEETMQ_HTTP", value_name = "ADDR", default_value = "127.0.0.1:8080",
          value_parser = addr::parse, help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub http: SocketAddr,

    /// HTTPS/WSS with the --tls-cert certificate [default: off]
    #[arg(long, env = "FLEETMQ_HTTPS", value_name = "ADDR", value_parser = addr::parse,
          help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub https: Option<SocketAddr>,

    /// OsmAnd / Traccar Client protocol (HTTP; port 5055 is the convention) [default: off]
    #[arg(long, env = "FLEETMQ_OSMAND", value_name = "ADDR", value_parser = addr::parse,
          help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub osmand: Option<SocketAddr>,

    /// The OsmAnd protocol over TLS with the --tls-cert certificate [default: off]
    #[arg(long, env = "FLEETMQ_OSMANDS", value_name = "ADDR", value_parser = addr::parse,
          help_heading = "Listeners")]
    #[serde(with = "addr")]
    pub osmands: Option<SocketAddr>,

    /// OsmAnd device ids allowed in, one a line (with auth, also the users' driver vehicles)
    /// [default: off]
    #[arg(long, env = "FLEETMQ_DEVICES", value_name = "FILE", value_parser = path::parse,
          help_heading = "Security")]
    #[serde(with = "path")]
    pub devices: Option<PathBuf>,

    /// GeoJSON FeatureCollection or GTFS (zip or folder) [default: bundled sample routes]
    #[arg(long, env = "FLEETMQ_ROUTES", value_name = "FILE", value_parser = path::parse,
          help_heading = "Data")]
    #[serde(with = "path")]
    pub routes: Option<PathBuf>,

    /// Redis URL for snapshots and restore, e.g. redis://127.0.0.1:6379 [default: off]
    // Unset keeps state in memory only.
    #[arg(long, env = "FLEETMQ_REDIS", value_name = "URL", value_parser = text::parse,
          help_heading = "Data")]
    #[serde(with = "text")]
    pub redis: Option<String>,

    /// Redis Cluster 7 seed nodes instead of --redis, e.g.
    /// redis://10.0.0.1:7000,redis://10.0.0.2:7000 [default: off]
    // Any reachable master will do: the client learns the rest from CLUSTER SLOTS.
    #[arg(long, env = "FLEETMQ_REDIS_CLUSTER", value_name = "URL,URL,...",
          value_parser = text::parse, help_heading = "Data")]
    #[serde(with = "text")]
    pub redis_cluster: Option<String>,

    /// Expiry of each vehicle's state in Redis, e.g. 3600, 90s, 1h
    #[arg(long, env = "FLEETMQ_STATE_TTL", value_name = "DURATION", default_value = "1h",
          value_parser = duration::parse, help_heading = "Data")]
    #[serde(with = "duration")]
    pub state_ttl: Duration,

    /// Join the cluster of nodes sharing --redis; needs --node-id and --redis
    // docs: README "Running a cluster"; the cluster module (broker/src/cluster/mod.rs) says why.
    #[arg(long, env = "FLEETMQ_CLUSTER", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = boolean::parse, help_heading = "Cluster")]
    #[serde(with = "boolean")]
    pub cluster: bool,

    /// This node's name in the cluster, [A-Za-z0-9_-], 1 to 64 characters [default: off]
    // Unset outside a cluster: `/api/v1/cluster` then names the single node `local`.
    #[arg(long, env = "FLEETMQ_NODE_ID", value_name = "NAME", value_parser = text::parse,
          help_heading = "Cluster")]
    #[serde(with = "text")]
    pub node_id: Option<String>,

    /// PostgreSQL URL for history, e.g. postgres://fleetmq@127.0.0.1/fleetmq [default: off]
    #[arg(long, env = "FLEETMQ_POSTGRES", value_name = "URL", value_parser = text::parse,
          hide_env_values = true, help_heading = "Data")]
    #[serde(with = "text")]
    pub postgres: Option<String>,

    /// History kept in PostgreSQL: whole day partitions older than this are dropped, e.g. 30d
    #[arg(long, env = "FLEETMQ_HISTORY_RETENTION", value_name = "DURATION", default_value = "30d",
          value_parser = duration::parse, help_heading = "Data")]
    #[serde(with = "duration")]
    pub history_retention: Duration,

    /// Map tile URL template with {z} {x} {y}, or none for the plain grid
    #[arg(long, env = "FLEETMQ_MAP_TILES", value_name = "URL",
          default_value = "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
          value_parser = text::parse, help_heading = "Data")]
    #[serde(with = "text")]
    pub map_tiles: String,

    /// Directory for the local SOS log (sos.log), created at the first SOS; relative to the
    /// working directory
    #[arg(long, env = "FLEETMQ_DATA_DIR", value_name = "DIR", default_value = "fleetmq-data",
          value_parser = path::parse, help_heading = "Data")]
    #[serde(with = "path")]
    pub data_dir: PathBuf,

    /// Users file (TOML, argon2 hashes from `fleetmq passwd`) [default: off]
    #[arg(long, env = "FLEETMQ_USERS", value_name = "FILE", value_parser = path::parse,
          help_heading = "Security")]
    #[serde(with = "path")]
    pub users: Option<PathBuf>,

    /// HS256 secret for JWT passwords/tokens [default: off]
    // `hide_env_values` marks a secret: hidden in `--help` and redacted by `--print-config`.
    #[arg(long, env = "FLEETMQ_JWT_SECRET", value_name = "S", value_parser = text::parse,
          hide_env_values = true, help_heading = "Security")]
    #[serde(with = "text")]
    pub jwt_secret: Option<String>,

    /// PEM public key for RS256/ES256 JWTs [default: off]
    #[arg(long, env = "FLEETMQ_JWT_PUBLIC_KEY", value_name = "FILE", value_parser = path::parse,
          help_heading = "Security")]
    #[serde(with = "path")]
    pub jwt_public_key: Option<PathBuf>,

    /// Extra topic rules (TOML [[rule]]) [default: off]
    #[arg(long, env = "FLEETMQ_ACL", value_name = "FILE", value_parser = path::parse,
          help_heading = "Security")]
    #[serde(with = "path")]
    pub acl: Option<PathBuf>,

    /// How long a finished trip's data stays readable to its riders, e.g. 30m
    #[arg(long, env = "FLEETMQ_TRIP_TTL", value_name = "DURATION", default_value = "30m",
          value_parser = duration::parse, help_heading = "Security")]
    #[serde(with = "duration")]
    pub trip_ttl: Duration,

    /// Longest keep-alive a client may ask for, seconds
    // A v5 client asking for more gets Server Keep Alive.
    #[arg(long, env = "FLEETMQ_MAX_KEEPALIVE", value_name = "S", default_value = "65535",
          value_parser = number::parse::<u16>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_keepalive: u16,

    /// Unacknowledged QoS 1/2 publishes a client may send us
    // Our Receive Maximum.
    #[arg(long, env = "FLEETMQ_RECEIVE_MAXIMUM", value_name = "N", default_value = "1024",
          value_parser = number::parse::<u16>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub receive_maximum: u16,

    /// Largest packet, bytes, e.g. 1048576 or 1MiB
    // Accepted from and sent to a client.
    #[arg(long, env = "FLEETMQ_MAX_PACKET_SIZE", value_name = "B", default_value = "1MiB",
          value_parser = size::parse, help_heading = "Limits")]
    #[serde(with = "size")]
    pub max_packet_size: u32,

    /// Simultaneous client connections
    #[arg(long, env = "FLEETMQ_MAX_CONNECTIONS", value_name = "N", default_value = "1000000",
          value_parser = number::parse::<usize>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_connections: usize,

    /// Messages queued per session (offline or not yet sent); oldest dropped when full
    #[arg(long, env = "FLEETMQ_MAX_QUEUED", value_name = "N", default_value = "1000",
          value_parser = number::parse::<usize>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_queued: usize,

    /// Vehicles tracked at most; a new vehicle id past it is refused (v5 PUBACK 0x97)
    #[arg(long, env = "FLEETMQ_MAX_VEHICLES", value_name = "N", default_value = "100000",
          value_parser = number::parse::<usize>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_vehicles: usize,

    /// Sessions at most, live and offline persistent; a new one past it gets CONNACK 0x97
    #[arg(long, env = "FLEETMQ_MAX_SESSIONS", value_name = "N", default_value = "100000",
          value_parser = number::parse::<usize>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_sessions: usize,

    /// Retained topics at most; a new one past it is refused (v5 PUBACK 0x97)
    #[arg(long, env = "FLEETMQ_MAX_RETAINED", value_name = "N", default_value = "100000",
          value_parser = number::parse::<usize>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_retained: usize,

    /// Retained payload bytes at most, e.g. 256MiB; a new topic past it is refused (0x97)
    #[arg(long, env = "FLEETMQ_MAX_RETAINED_BYTES", value_name = "B", default_value = "256MiB",
          value_parser = size::parse, help_heading = "Limits")]
    #[serde(with = "size")]
    pub max_retained_bytes: u32,

    /// How long a 3.1.1 persistent session (clean session 0) outlives its connection, e.g.
    /// 7200, 30m, 2h; 0 = never
    #[arg(long = "session-expiry-311", env = "FLEETMQ_SESSION_EXPIRY_311", value_name = "DURATION",
          default_value = "2h", value_parser = duration::parse, help_heading = "Limits")]
    #[serde(with = "duration")]
    pub session_expiry_311: Duration,

    /// Allow clients without credentials [default: on only with no authentication and
    /// loopback-only listeners]
    // `None` is that rule, applied by `auth`; a bare `--allow-anonymous` means true.
    #[arg(long, env = "FLEETMQ_ALLOW_ANONYMOUS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = boolean::parse,
          help_heading = "Security")]
    #[serde(with = "boolean")]
    pub allow_anonymous: Option<bool>,

    /// New connections per IP per second; 0 = unlimited
    #[arg(long, env = "FLEETMQ_MAX_CONNECT_RATE", value_name = "N", default_value = "0",
          value_parser = number::parse::<u32>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_connect_rate: u32,

    /// PUBLISH packets per client per second; 0 = unlimited
    // v5 clients exceeding it get DISCONNECT 0x96.
    #[arg(long, env = "FLEETMQ_MAX_PUBLISH_RATE", value_name = "N", default_value = "0",
          value_parser = number::parse::<u32>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_publish_rate: u32,

    /// HTTP requests (REST, SSE and WebSocket opens) per bearer token, else per IP, per
    /// second; 0 = unlimited
    // Over it: 429 with Retry-After (bridge/src/ratelimit.rs).
    #[arg(long, env = "FLEETMQ_MAX_REQUEST_RATE", value_name = "N", default_value = "0",
          value_parser = number::parse::<u32>, help_heading = "Limits")]
    #[serde(with = "number")]
    pub max_request_rate: u32,

    /// Log format on stderr: pretty or json; filter with RUST_LOG
    #[arg(long, env = "FLEETMQ_LOG", value_name = "FORMAT", default_value = "pretty",
          value_parser = log_format::parse, help_heading = "Logging")]
    #[serde(with = "log_format")]
    pub log: LogFormat,

    /// GeoJSON polygons (depots, terminals, school zones) raising geofence events, with any routes [default: off]
    #[arg(long, env = "FLEETMQ_ZONES", value_name = "FILE", value_parser = path::parse,
          help_heading = "Data")]
    #[serde(with = "path")]
    pub zones: Option<PathBuf>,

    /// Start the pipeline clock at this Unix time, ms, then run at real speed (replays, tests) [default: the system clock]
    // Fix validation, received_at, the offline sweep and GTFS-Realtime headers follow it.
    #[arg(long, env = "FLEETMQ_CLOCK_START", value_name = "MS", value_parser = number::parse::<i64>,
          help_heading = "Data")]
    #[serde(with = "number")]
    pub clock_start: Option<i64>,

    /// A vehicle without a fix this long goes offline
    #[arg(long, env = "FLEETMQ_STALE_AFTER", value_name = "DURATION", default_value = "1m",
          value_parser = duration::parse, help_heading = "Pipeline")]
    #[serde(with = "duration")]
    pub stale_after: Duration,

    /// Jitter: a fix that moved less than this many metres while slower than --min-speed is dropped
    #[arg(long, env = "FLEETMQ_MIN_MOVE_M", value_name = "M", default_value = "10",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub min_move_m: f64,

    /// Jitter speed, m/s; also the line between moving and stopped
    #[arg(long, env = "FLEETMQ_MIN_SPEED", value_name = "M/S", default_value = "0.5",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub min_speed: f64,

    /// Largest believable speed, m/s, reported or implied by the last fix (teleport)
    #[arg(long, env = "FLEETMQ_MAX_SPEED", value_name = "M/S", default_value = "70",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub max_speed: f64,

    /// Largest accepted accuracy, metres
    #[arg(long, env = "FLEETMQ_MAX_ACCURACY", value_name = "M", default_value = "100",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub max_accuracy: f64,

    /// Corridor half-width of routes without their own corridor_m, metres
    #[arg(long, env = "FLEETMQ_CORRIDOR_M", value_name = "M", default_value = "50",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub corridor_m: f64,

    /// Consecutive fixes outside (inside) the corridor before deviation (back_on_route)
    #[arg(long, env = "FLEETMQ_OFF_ROUTE_FIXES", value_name = "N", default_value = "3",
          value_parser = number::parse::<u32>, help_heading = "Pipeline")]
    #[serde(with = "number")]
    pub off_route_fixes: u32,

    /// Distance from a stop that counts as arrived, metres
    #[arg(long, env = "FLEETMQ_STOP_RADIUS_M", value_name = "M", default_value = "30",
          value_parser = decimal::parse, help_heading = "Pipeline")]
    #[serde(with = "decimal")]
    pub stop_radius_m: f64,
}

impl Config {
    /// The map's tile URL template; `None` when `--map-tiles none` asks for the plain grid.
    pub fn map_tile_url(&self) -> Option<String> {
        let t = self.map_tiles.trim();
        (!t.eq_ignore_ascii_case("none")).then(|| t.to_owned())
    }

    /// The settings as declared on [`Config`], in order: each a clap argument whose id is the
    /// field name and TOML key, with its flag, variable, help, value name and default.
    pub fn declarations() -> Vec<clap::Arg> {
        Config::augment_args(clap::Command::new("fleetmq"))
            .get_arguments()
            .cloned()
            .collect()
    }
}

impl Config {
    /// The pipeline thresholds (docs/pipeline.md) these settings give; the rest at geo-engine's
    /// defaults.
    pub fn pipeline(&self) -> geo_engine::PipelineConfig {
        geo_engine::PipelineConfig {
            stale_after_ms: i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX),
            min_move_m: self.min_move_m,
            min_speed: self.min_speed,
            max_speed: self.max_speed,
            max_accuracy: self.max_accuracy,
            corridor_m: self.corridor_m,
            off_route_fixes: self.off_route_fixes,
            stop_radius_m: self.stop_radius_m,
            ..geo_engine::PipelineConfig::default()
        }
    }
}

impl Default for Config {
    /// Every setting at its declared default: no flags, no environment, no file.
    fn default() -> Config {
        let cmd = Config::augment_args(clap::Command::new("fleetmq").no_binary_name(true))
            .mut_args(|arg| arg.env(None));
        cmd.try_get_matches_from(std::iter::empty::<&str>())
            .and_then(|matches| Config::from_arg_matches(&matches))
            // The declared defaults are constants, checked by `cli::docs` and every test that
            // builds a Config.
            .unwrap_or_else(|err| panic!("a declared default does not parse: {err}"))
    }
}
