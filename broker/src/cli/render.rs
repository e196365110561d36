//! A resolved [`Config`] written back as config-file TOML, for `serve --print-config`: the output
//! is itself a valid `--config` file (settings that are off become comments).

use std::fmt::Write;
use std::path::Path;

use super::value;
use crate::Config;

/// Each key of [`super::file::KEYS`] with its value as a TOML literal, `None` when off.
/// The JWT secret is shown as `"<redacted>"`.
pub fn entries(c: &Config) -> Vec<(&'static str, Option<String>)> {
    let s = |v: &str| toml::Value::String(v.to_string()).to_string();
    let f = |v: f64| toml::Value::Float(v).to_string();
    let p = |v: &Option<std::path::PathBuf>| v.as_deref().map(|p: &Path| s(&p.to_string_lossy()));
    vec![
        ("mqtt", Some(s(&c.mqtt.to_string()))),
        ("mqtts", c.mqtts.map(|a| s(&a.to_string()))),
        ("tls_cert", p(&c.tls_cert)),
        ("tls_key", p(&c.tls_key)),
        ("tls_client_ca", p(&c.tls_client_ca)),
        ("http", Some(s(&c.http.to_string()))),
        ("https", c.https.map(|a| s(&a.to_string()))),
        ("routes", p(&c.routes)),
        ("redis", c.redis.as_deref().map(s)),
        ("state_ttl", Some(s(&value::format_duration(c.state_ttl)))),
        ("users", p(&c.users)),
        ("jwt_secret", c.jwt_secret.as_ref().map(|_| s("<redacted>"))),
        ("jwt_public_key", p(&c.jwt_public_key)),
        ("acl", p(&c.acl)),
        ("max_keepalive", Some(c.max_keepalive.to_string())),
        ("receive_maximum", Some(c.receive_maximum.to_string())),
        ("max_packet_size", Some(c.max_packet_size.to_string())),
        ("max_connections", Some(c.max_connections.to_string())),
        ("max_queued", Some(c.max_queued.to_string())),
        ("allow_anonymous", c.allow_anonymous.map(|b| b.to_string())),
        ("max_connect_rate", Some(c.max_connect_rate.to_string())),
        ("max_publish_rate", Some(c.max_publish_rate.to_string())),
        ("log", Some(s(value::format_log(c.log)))),
        ("zones", p(&c.zones)),
        ("clock_start", c.clock_start.map(|t| t.to_string())),
        (
            "stale_after",
            Some(s(&value::format_duration(
                std::time::Duration::from_millis(c.pipeline.stale_after_ms.max(0) as u64),
            ))),
        ),
        ("min_move_m", Some(f(c.pipeline.min_move_m))),
        ("min_speed", Some(f(c.pipeline.min_speed))),
        ("max_speed", Some(f(c.pipeline.max_speed))),
        ("max_accuracy", Some(f(c.pipeline.max_accuracy))),
        ("corridor_m", Some(f(c.pipeline.corridor_m))),
        (
            "off_route_fixes",
            Some(c.pipeline.off_route_fixes.to_string()),
        ),
        ("stop_radius_m", Some(f(c.pipeline.stop_radius_m))),
    ]
}

/// What an unset optional setting means.
fn unset_meaning(key: &str) -> &'static str {
    match key {
        "routes" => "unset (the bundled sample routes)",
        "allow_anonymous" => "unset (allowed only with no auth configured and loopback listeners)",
        "clock_start" => "unset (the system clock)",
        _ => "off",
    }
}

/// The whole configuration as TOML, one `key = value` line per setting.
pub fn to_toml(c: &Config) -> String {
    let mut out = String::from("# fleetmq resolved configuration\n");
    for (key, v) in entries(c) {
        // Writing to a String cannot fail.
        let _ = match v {
            Some(v) => writeln!(out, "{key} = {v}"),
            None => writeln!(out, "# {key}: {}", unset_meaning(key)),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::file;
    use super::*;

    #[test]
    fn keys_match_the_file_keys_in_order() {
        let keys: Vec<_> = entries(&Config::default())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, file::KEYS);
    }

    #[test]
    fn output_reads_back_as_the_same_config() {
        let c = Config {
            max_queued: 17,
            state_ttl: std::time::Duration::from_millis(1500),
            allow_anonymous: Some(false),
            routes: Some("routes \"x\".geojson".into()),
            log: crate::config::LogFormat::Json,
            ..Config::default()
        };
        let text = to_toml(&c);
        let back = file::parse("print", &text)
            .and_then(|s| s.into_config())
            .expect("reads back");
        assert_eq!(format!("{back:?}"), format!("{c:?}"));
    }

    /// `fleetmq.example.toml` lists every key, each commented out with its default (or, for a
    /// setting that is off by default, an example value).
    #[test]
    fn example_file_lists_every_key_with_its_default() {
        let example = include_str!("../../../fleetmq.example.toml");
        let defaults = entries(&Config::default());
        for (key, default) in defaults {
            let prefix = format!("# {key} = ");
            let line = example
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("fleetmq.example.toml lacks \"{prefix}...\""));
            let shown = line[prefix.len()..].trim();
            // The example value must itself be valid.
            file::parse("example", &format!("{key} = {shown}"))
                .unwrap_or_else(|e| panic!("example line {line:?}: {e}"));
            if let Some(default) = default {
                assert_eq!(shown, default, "default of {key}");
            }
        }
    }
}
