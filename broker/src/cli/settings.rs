//! `fleetmq serve`'s arguments and how they resolve into a [`Config`]: a flag beats its
//! `FLEETMQ_*` variable (clap reads both, through [`Config`]'s declarations), which beats the
//! `--config` file, which beats the declared default. The layers meet as TOML tables: the file's,
//! overlaid with the text of every setting given as a flag or variable ([`Given`]), read once by
//! `Config`'s deserializer, which fills the rest with the defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, FromArgMatches};
use serde::Deserialize;
use toml::{Table, Value};

use super::failure::Failure;
use super::file;
use crate::Config;

/// The settings given on the command line or as `FLEETMQ_*` variables, each as the text it was
/// given in. clap has already run it through the setting's parser, so a bad value never gets
/// this far; the text is read again, with the same parser, when the layers are merged.
#[derive(Debug, Clone, Default)]
pub struct Given(Table);

impl clap::Args for Given {
    fn augment_args(cmd: Command) -> Command {
        Config::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Config::augment_args_for_update(cmd)
    }
}

impl FromArgMatches for Given {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Given, clap::Error> {
        let mut given = Table::new();
        for arg in Config::declarations() {
            let id = arg.get_id().as_str();
            let typed = matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            // The parsers take `&str`, so a given value is always UTF-8.
            let text = matches
                .get_raw(id)
                .and_then(|mut raw| raw.next())
                .and_then(|raw| raw.to_str());
            if let (true, Some(text)) = (typed, text) {
                given.insert(id.to_owned(), Value::String(text.to_owned()));
            }
        }
        Ok(Given(given))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let update = Given::from_arg_matches(matches)?;
        self.0.extend(update.0);
        Ok(())
    }
}

/// `fleetmq serve`: every setting of [`Config`], plus where to read more of them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub given: Given,
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
        let mut layers = match &self.config {
            Some(path) => file::load(path)?,
            None => Table::new(),
        };
        layers.extend(self.given.0.clone());
        let config = Config::deserialize(layers)
            // Each layer was checked key by key already; this is only reached by a bug.
            .map_err(|err| Failure::Config(format!("configuration: {}", err.message())))?;
        check(&config)?;
        Ok(config)
    }
}

/// Combinations no listener could start with, reported before anything binds.
fn check(c: &Config) -> Result<(), Failure> {
    let bad = |line: &str| Err(Failure::Config(line.to_string()));
    let tls_wanted = c.mqtts.is_some() || c.https.is_some() || c.osmands.is_some();
    if tls_wanted && (c.tls_cert.is_none() || c.tls_key.is_none()) {
        let which = if c.mqtts.is_some() {
            "--mqtts"
        } else if c.https.is_some() {
            "--https"
        } else {
            "--osmands"
        };
        return bad(&format!(
            "{which} needs --tls-cert and --tls-key (make development ones with `fleetmq certs --out certs`)"
        ));
    }
    if !tls_wanted && (c.tls_cert.is_some() || c.tls_key.is_some() || c.tls_client_ca.is_some()) {
        return bad(
            "--tls-cert/--tls-key/--tls-client-ca are set but no TLS listener is: add --mqtts ADDR, --https ADDR or --osmands ADDR",
        );
    }
    if c.redis.is_some() && c.redis_cluster.is_some() {
        return bad(
            "--redis (one node) and --redis-cluster (a Redis Cluster) exclude each other: give one",
        );
    }
    if let Some(seeds) = &c.redis_cluster
        && let Some(bad_seed) = seeds.split(',').map(str::trim).find(|s| {
            !(s.starts_with("redis://") || s.starts_with("rediss://"))
                || s.len() <= "redis://".len()
        })
    {
        return bad(&format!(
            "--redis-cluster seed {bad_seed:?} is not a Redis URL: give redis://HOST:PORT,redis://HOST:PORT,..."
        ));
    }
    if c.history_retention < Duration::from_secs(86_400) {
        return bad("--history-retention below 1d would drop today's partition: use e.g. 30d");
    }
    if let Some(t) = c.map_tile_url()
        && (!(t.starts_with("http://") || t.starts_with("https://") || t.starts_with('/'))
            || !["{z}", "{x}", "{y}"].iter().all(|p| t.contains(p)))
    {
        return bad("--map-tiles must be an http(s) URL template with {z}, {x} and {y}, or none");
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
    if c.off_route_fixes == 0 {
        return bad("--off-route-fixes 0 would flag every fix: use 1 or more");
    }
    let thresholds = [
        ("--min-move-m", c.min_move_m),
        ("--min-speed", c.min_speed),
        ("--max-speed", c.max_speed),
        ("--max-accuracy", c.max_accuracy),
        ("--corridor-m", c.corridor_m),
        ("--stop-radius-m", c.stop_radius_m),
    ];
    if let Some((flag, v)) = thresholds.iter().find(|(_, v)| *v < 0.0) {
        return bad(&format!(
            "{flag} {v} is negative: give metres or m/s, 0 or more"
        ));
    }
    if c.max_speed == 0.0 || c.corridor_m == 0.0 {
        return bad("--max-speed and --corridor-m must be above 0");
    }
    if let Some(id) = &c.node_id
        && !crate::cluster::valid_node_id(id)
    {
        return bad(&format!(
            "--node-id {id:?} is not a node name: use 1 to 64 of A-Z a-z 0-9 _ -, e.g. node-a"
        ));
    }
    if c.cluster && c.node_id.is_none() {
        return bad("--cluster needs --node-id NAME: give each node a unique name, e.g. node-a");
    }
    if c.cluster && c.redis.is_none() {
        return bad(
            "--cluster needs --redis URL: the nodes of a cluster share one Redis, e.g. redis://127.0.0.1:6379",
        );
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
    use std::net::SocketAddr;

    use clap::Parser;

    use super::*;

    /// `serve ARGS` parsed with the environment ignored.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(args: &[&str]) -> ServeArgs {
        let cmd = <Serve as clap::CommandFactory>::command()
            .no_binary_name(true)
            .mut_args(|arg| arg.env(None));
        let matches = cmd.try_get_matches_from(args).expect("valid flags");
        Serve::from_arg_matches(&matches).expect("matches").args
    }

    fn refused(c: Config) -> String {
        match check(&c) {
            Err(Failure::Config(line)) => line,
            other => panic!("expected a config failure, got {other:?}"),
        }
    }

    #[test]
    fn upper_layer_wins_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("fleetmq-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("layers.toml");
        std::fs::write(&file, "max_queued = 2\nmax_keepalive = 2\n").expect("write");
        let path = file.to_str().expect("utf-8");
        let c = serve(&["--config", path, "--max-queued", "3"])
            .resolve()
            .expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.max_queued, 3);
        assert_eq!(c.max_keepalive, 2);
        assert_eq!(c.receive_maximum, Config::default().receive_maximum);
    }

    #[test]
    fn only_given_settings_are_in_the_top_layer() {
        let args = serve(&["--mqtt", "localhost:7", "--allow-anonymous"]);
        let mut keys: Vec<_> = args.given.0.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["allow_anonymous", "mqtt"]);
        let c = args.resolve().expect("valid");
        assert_eq!(c.mqtt, SocketAddr::from(([127, 0, 0, 1], 7)));
        assert_eq!(c.allow_anonymous, Some(true));
    }

    #[test]
    fn declared_defaults_are_the_spec_ones() {
        let c = serve(&[]).resolve().expect("defaults are valid");
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
        assert_eq!(c.mqtt, SocketAddr::from(([127, 0, 0, 1], 1883)));
        assert_eq!(c.http, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.state_ttl, std::time::Duration::from_secs(3600));
        assert_eq!(c.max_packet_size, 1024 * 1024);
        assert_eq!(c.max_connections, 1_000_000);
        assert_eq!((c.max_keepalive, c.receive_maximum), (65535, 1024));
        assert_eq!(c.max_queued, 1000);
        assert_eq!((c.max_connect_rate, c.max_publish_rate), (0, 0));
        assert_eq!(c.log, crate::config::LogFormat::Pretty);
        assert!(c.mqtts.is_none() && c.redis.is_none() && c.allow_anonymous.is_none());
    }

    #[test]
    fn contradictory_settings_are_refused_with_the_fix() {
        let addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let line = refused(Config {
            https: addr,
            tls_cert: Some("c.pem".into()),
            ..Config::default()
        });
        assert!(
            line.starts_with("--https needs --tls-cert and --tls-key"),
            "{line}"
        );
        let line = refused(Config {
            tls_client_ca: Some("ca.pem".into()),
            ..Config::default()
        });
        assert!(line.contains("add --mqtts"), "{line}");
        let line = refused(Config {
            jwt_secret: Some("s".into()),
            jwt_public_key: Some("k.pem".into()),
            ..Config::default()
        });
        assert!(line.contains("give one"), "{line}");
        let line = refused(Config {
            receive_maximum: 0,
            ..Config::default()
        });
        assert!(line.contains("1 to 65535"), "{line}");
        let line = refused(Config {
            max_queued: 0,
            ..Config::default()
        });
        assert!(line.starts_with("--max-queued 0"), "{line}");
        let line = refused(Config {
            redis: Some("redis://127.0.0.1:6379".into()),
            redis_cluster: Some("redis://127.0.0.1:7000".into()),
            ..Config::default()
        });
        assert!(line.contains("exclude each other: give one"), "{line}");
        let line = refused(Config {
            redis_cluster: Some("redis://127.0.0.1:7000,127.0.0.1:7001".into()),
            ..Config::default()
        });
        assert!(
            line.contains("\"127.0.0.1:7001\" is not a Redis URL"),
            "{line}"
        );
        let ok = Config {
            mqtts: addr,
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            ..Config::default()
        };
        assert!(check(&ok).is_ok());
    }

    #[test]
    fn cluster_needs_a_node_id_and_redis() {
        let line = refused(Config {
            cluster: true,
            redis: Some("redis://127.0.0.1:6379".into()),
            ..Config::default()
        });
        assert!(line.starts_with("--cluster needs --node-id"), "{line}");
        let line = refused(Config {
            cluster: true,
            node_id: Some("a".into()),
            ..Config::default()
        });
        assert!(line.starts_with("--cluster needs --redis"), "{line}");
        let line = refused(Config {
            node_id: Some("bad name".into()),
            ..Config::default()
        });
        assert!(line.contains("is not a node name"), "{line}");
        let c = serve(&["--cluster", "--node-id", "node-a", "--redis", "redis://h"])
            .resolve()
            .expect("valid");
        assert!(c.cluster);
        assert_eq!(c.node_id.as_deref(), Some("node-a"));
    }
}
