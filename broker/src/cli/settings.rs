//! The `serve` settings as one layer of optional values, and their resolution into a
//! [`Config`]: flag beats `FLEETMQ_*` env (both read by clap) beats the `--config` file beats
//! the default of docs/configuration.md#settings ([`Config::default`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::failure::Failure;
use super::{file, value};
use crate::Config;
use crate::config::LogFormat;

/// Every setting of docs/configuration.md#settings; `None` means "not given in this layer". The
/// field names are the config file's keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// MQTT over TCP, 3.1.1 and 5.0 on one port [default: 127.0.0.1:1883]
    #[arg(long, help_heading = "Listeners", env = "FLEETMQ_MQTT", value_name = "ADDR", value_parser = value::addr)]
    pub mqtt: Option<SocketAddr>,
    /// MQTT over TLS; needs --tls-cert and --tls-key [default: off]
    #[arg(long, help_heading = "Listeners", env = "FLEETMQ_MQTTS", value_name = "ADDR", value_parser = value::addr)]
    pub mqtts: Option<SocketAddr>,
    /// PEM certificate chain for --mqtts and --https
    #[arg(long, help_heading = "TLS", env = "FLEETMQ_TLS_CERT", value_name = "FILE", value_parser = value::path)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, help_heading = "TLS", env = "FLEETMQ_TLS_KEY", value_name = "FILE", value_parser = value::path)]
    pub tls_key: Option<PathBuf>,
    /// CA whose client certificates are accepted; turns on client-certificate auth
    #[arg(long, help_heading = "TLS", env = "FLEETMQ_TLS_CLIENT_CA", value_name = "FILE", value_parser = value::path)]
    pub tls_client_ca: Option<PathBuf>,
    /// WebSocket bridge, REST, SSE, MQTT over WebSocket, metrics, map [default: 127.0.0.1:8080]
    #[arg(long, help_heading = "Listeners", env = "FLEETMQ_HTTP", value_name = "ADDR", value_parser = value::addr)]
    pub http: Option<SocketAddr>,
    /// HTTPS/WSS with the --tls-cert certificate [default: off]
    #[arg(long, help_heading = "Listeners", env = "FLEETMQ_HTTPS", value_name = "ADDR", value_parser = value::addr)]
    pub https: Option<SocketAddr>,
    /// GeoJSON FeatureCollection or GTFS (zip or folder) [default: the bundled sample routes]
    #[arg(long, help_heading = "Data", env = "FLEETMQ_ROUTES", value_name = "FILE", value_parser = value::path)]
    pub routes: Option<PathBuf>,
    /// Redis URL for snapshots and restore, e.g. redis://127.0.0.1:6379 [default: off]
    #[arg(long, help_heading = "Data", env = "FLEETMQ_REDIS", value_name = "URL", value_parser = value::text)]
    pub redis: Option<String>,
    /// Expiry of each vehicle's state in Redis, e.g. 3600, 90s, 1h [default: 1h]
    #[arg(long, help_heading = "Data", env = "FLEETMQ_STATE_TTL", value_name = "DURATION", value_parser = value::duration)]
    pub state_ttl: Option<Duration>,
    /// Users file (TOML, argon2 hashes from `fleetmq passwd`) [default: off]
    #[arg(long, help_heading = "Security", env = "FLEETMQ_USERS", value_name = "FILE", value_parser = value::path)]
    pub users: Option<PathBuf>,
    /// HS256 secret for JWT passwords/tokens [default: off]
    #[arg(long, help_heading = "Security", env = "FLEETMQ_JWT_SECRET", value_name = "S", value_parser = value::text,
          hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key for RS256/ES256 JWTs [default: off]
    #[arg(long, help_heading = "Security", env = "FLEETMQ_JWT_PUBLIC_KEY", value_name = "FILE", value_parser = value::path)]
    pub jwt_public_key: Option<PathBuf>,
    /// Extra topic rules (TOML [[rule]]) [default: off]
    #[arg(long, help_heading = "Security", env = "FLEETMQ_ACL", value_name = "FILE", value_parser = value::path)]
    pub acl: Option<PathBuf>,
    /// Longest keep-alive a client may ask for, seconds [default: 65535]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_KEEPALIVE", value_name = "S", value_parser = value::number::<u16>)]
    pub max_keepalive: Option<u16>,
    /// Unacknowledged QoS 1/2 publishes a client may send us [default: 1024]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_RECEIVE_MAXIMUM", value_name = "N",
          value_parser = value::number::<u16>)]
    pub receive_maximum: Option<u16>,
    /// Largest packet, bytes, e.g. 1048576 or 1MiB [default: 1MiB]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_PACKET_SIZE", value_name = "B", value_parser = value::size)]
    pub max_packet_size: Option<u32>,
    /// Simultaneous client connections [default: 1000000]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_CONNECTIONS", value_name = "N",
          value_parser = value::number::<usize>)]
    pub max_connections: Option<usize>,
    /// Messages queued per session (offline or not yet sent); oldest dropped when full [default: 1000]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_QUEUED", value_name = "N", value_parser = value::number::<usize>)]
    pub max_queued: Option<usize>,
    /// Allow clients without credentials [default: only with no auth configured and every
    /// listener on loopback]
    #[arg(long, help_heading = "Security", env = "FLEETMQ_ALLOW_ANONYMOUS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = value::boolean)]
    pub allow_anonymous: Option<bool>,
    /// New connections per IP per second; 0 = unlimited [default: 0]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_CONNECT_RATE", value_name = "N",
          value_parser = value::number::<u32>)]
    pub max_connect_rate: Option<u32>,
    /// PUBLISH packets per client per second; 0 = unlimited [default: 0]
    #[arg(long, help_heading = "Limits", env = "FLEETMQ_MAX_PUBLISH_RATE", value_name = "N",
          value_parser = value::number::<u32>)]
    pub max_publish_rate: Option<u32>,
    /// Log format on stderr: pretty or json; filter with RUST_LOG [default: pretty]
    #[arg(long, help_heading = "Logging", env = "FLEETMQ_LOG", value_name = "FORMAT", value_parser = value::log_format)]
    pub log: Option<LogFormat>,
}

/// `fleetmq serve`: the settings plus where to read more of them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// TOML file with any of the settings below; keys are the flag names with underscores
    /// (max_queued = 500). Flags and FLEETMQ_* variables override it.
    #[arg(long, env = "FLEETMQ_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long, hide = true)]
    pub print_config: bool,
}

impl ServeArgs {
    /// Reads the `--config` file, if any, and resolves every setting.
    ///
    /// # Errors
    /// [`Failure::Config`] for an unreadable file, bad TOML, an unknown key, a bad value, or
    /// settings that contradict each other.
    pub fn resolve(&self) -> Result<Config, Failure> {
        let from_file = match &self.config {
            Some(path) => file::load(path)?,
            None => Settings::default(),
        };
        self.settings.clone().over(from_file).into_config()
    }
}

impl Settings {
    /// This layer with `lower`'s values where this one has none.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            mqtt: self.mqtt.or(lower.mqtt),
            mqtts: self.mqtts.or(lower.mqtts),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_client_ca: self.tls_client_ca.or(lower.tls_client_ca),
            http: self.http.or(lower.http),
            https: self.https.or(lower.https),
            routes: self.routes.or(lower.routes),
            redis: self.redis.or(lower.redis),
            state_ttl: self.state_ttl.or(lower.state_ttl),
            users: self.users.or(lower.users),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            jwt_public_key: self.jwt_public_key.or(lower.jwt_public_key),
            acl: self.acl.or(lower.acl),
            max_keepalive: self.max_keepalive.or(lower.max_keepalive),
            receive_maximum: self.receive_maximum.or(lower.receive_maximum),
            max_packet_size: self.max_packet_size.or(lower.max_packet_size),
            max_connections: self.max_connections.or(lower.max_connections),
            max_queued: self.max_queued.or(lower.max_queued),
            allow_anonymous: self.allow_anonymous.or(lower.allow_anonymous),
            max_connect_rate: self.max_connect_rate.or(lower.max_connect_rate),
            max_publish_rate: self.max_publish_rate.or(lower.max_publish_rate),
            log: self.log.or(lower.log),
        }
    }

    /// Fills what is still unset with docs/configuration.md#settings's defaults and checks the
    /// combination.
    ///
    /// # Errors
    /// [`Failure::Config`] when TLS settings are incomplete or a limit is zero where zero cannot
    /// work.
    pub fn into_config(self) -> Result<Config, Failure> {
        let d = Config::default();
        let config = Config {
            mqtt: self.mqtt.unwrap_or(d.mqtt),
            mqtts: self.mqtts.or(d.mqtts),
            tls_cert: self.tls_cert.or(d.tls_cert),
            tls_key: self.tls_key.or(d.tls_key),
            tls_client_ca: self.tls_client_ca.or(d.tls_client_ca),
            http: self.http.unwrap_or(d.http),
            https: self.https.or(d.https),
            routes: self.routes.or(d.routes),
            redis: self.redis.or(d.redis),
            state_ttl: self.state_ttl.unwrap_or(d.state_ttl),
            users: self.users.or(d.users),
            jwt_secret: self.jwt_secret.or(d.jwt_secret),
            jwt_public_key: self.jwt_public_key.or(d.jwt_public_key),
            acl: self.acl.or(d.acl),
            max_keepalive: self.max_keepalive.unwrap_or(d.max_keepalive),
            receive_maximum: self.receive_maximum.unwrap_or(d.receive_maximum),
            max_packet_size: self.max_packet_size.unwrap_or(d.max_packet_size),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_queued: self.max_queued.unwrap_or(d.max_queued),
            allow_anonymous: self.allow_anonymous.or(d.allow_anonymous),
            max_connect_rate: self.max_connect_rate.unwrap_or(d.max_connect_rate),
            max_publish_rate: self.max_publish_rate.unwrap_or(d.max_publish_rate),
            log: self.log.unwrap_or(d.log),
        };
        check(&config)?;
        Ok(config)
    }
}

/// Combinations no listener could start with, reported before anything binds.
fn check(c: &Config) -> Result<(), Failure> {
    let bad = |line: &str| Err(Failure::Config(line.to_string()));
    let tls_wanted = c.mqtts.is_some() || c.https.is_some();
    if tls_wanted && (c.tls_cert.is_none() || c.tls_key.is_none()) {
        let which = if c.mqtts.is_some() {
            "--mqtts"
        } else {
            "--https"
        };
        return bad(&format!(
            "{which} needs --tls-cert and --tls-key (make development ones with `fleetmq certs --out certs`)"
        ));
    }
    if !tls_wanted && (c.tls_cert.is_some() || c.tls_key.is_some() || c.tls_client_ca.is_some()) {
        return bad(
            "--tls-cert/--tls-key/--tls-client-ca are set but no TLS listener is: add --mqtts ADDR or --https ADDR",
        );
    }
    if c.jwt_secret.is_some() && c.jwt_public_key.is_some() {
        return bad(
            "--jwt-secret (HS256) and --jwt-public-key (RS256/ES256) exclude each other: give one",
        );
    }
    if c.receive_maximum == 0 {
        return bad("--receive-maximum 0 is not allowed by MQTT 5: use 1 to 65535");
    }
    if c.max_packet_size < 64 {
        return bad("--max-packet-size below 64 bytes cannot carry a CONNECT: use e.g. 1MiB");
    }
    if c.max_queued == 0 || c.max_connections == 0 {
        let flag = if c.max_queued == 0 {
            "--max-queued"
        } else {
            "--max-connections"
        };
        return bad(&format!("{flag} 0 would refuse everything: use 1 or more"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: Settings) -> String {
        match s.into_config() {
            Err(Failure::Config(line)) => line,
            other => panic!("expected a config failure, got {other:?}"),
        }
    }

    #[test]
    fn upper_layer_wins_and_defaults_fill_the_rest() {
        let flags = Settings {
            max_queued: Some(3),
            ..Settings::default()
        };
        let file = Settings {
            max_queued: Some(2),
            max_keepalive: Some(2),
            ..Settings::default()
        };
        let c = flags.over(file).into_config().expect("valid");
        assert_eq!(c.max_queued, 3);
        assert_eq!(c.max_keepalive, 2);
        assert_eq!(c.receive_maximum, Config::default().receive_maximum);
    }

    #[test]
    fn contradictory_settings_are_refused_with_the_fix() {
        let addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let line = refused(Settings {
            https: addr,
            tls_cert: Some("c.pem".into()),
            ..Settings::default()
        });
        assert!(
            line.starts_with("--https needs --tls-cert and --tls-key"),
            "{line}"
        );
        let line = refused(Settings {
            tls_client_ca: Some("ca.pem".into()),
            ..Settings::default()
        });
        assert!(line.contains("add --mqtts"), "{line}");
        let line = refused(Settings {
            jwt_secret: Some("s".into()),
            jwt_public_key: Some("k.pem".into()),
            ..Settings::default()
        });
        assert!(line.contains("give one"), "{line}");
        let line = refused(Settings {
            receive_maximum: Some(0),
            ..Settings::default()
        });
        assert!(line.contains("1 to 65535"), "{line}");
        let line = refused(Settings {
            max_queued: Some(0),
            ..Settings::default()
        });
        assert!(line.starts_with("--max-queued 0"), "{line}");
        let ok = Settings {
            mqtts: addr,
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            ..Settings::default()
        };
        assert!(ok.into_config().is_ok());
    }
}
