//! The `--config FILE` layer: a flat TOML table whose keys are the `serve` flag names with
//! underscores (`max_queued = 500`). Values are parsed by the same functions as flags, so a file
//! accepts `state_ttl = "1h"` or `state_ttl = 3600` just as `--state-ttl` does. Every problem is
//! one line naming the file, the key and the fix.

use std::io::Read;
use std::path::Path;

use super::failure::Failure;
use super::settings::Settings;
use super::value;

/// Every key a config file may hold, in the order of docs/configuration.md#settings (and of
/// `fleetmq.example.toml`).
pub const KEYS: &[&str] = &[
    "mqtt",
    "mqtts",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "http",
    "https",
    "routes",
    "redis",
    "state_ttl",
    "users",
    "jwt_secret",
    "jwt_public_key",
    "acl",
    "max_keepalive",
    "receive_maximum",
    "max_packet_size",
    "max_connections",
    "max_queued",
    "allow_anonymous",
    "max_connect_rate",
    "max_publish_rate",
    "log",
];

/// Config files are a few hundred bytes; anything past this is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads and parses a config file.
///
/// # Errors
/// [`Failure::Config`] naming the file (and key) when it cannot be read, is not TOML, or holds an
/// unknown key or a bad value.
pub fn load(path: &Path) -> Result<Settings, Failure> {
    let name = path.display();
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text));
    match read {
        Err(err) => {
            return Err(Failure::Config(format!(
                "{name}: cannot read config file ({err}): check the --config path"
            )));
        }
        Ok(n) if n as u64 > MAX_FILE_BYTES => {
            return Err(Failure::Config(format!(
                "{name}: config file larger than {MAX_FILE_BYTES} bytes: is this the right file?"
            )));
        }
        Ok(_) => {}
    }
    parse(&name.to_string(), &text)
}

/// Parses config text; `name` is used in messages.
///
/// # Errors
/// As [`load`].
pub fn parse(name: &str, text: &str) -> Result<Settings, Failure> {
    let table: toml::Table = toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        let msg = err.message().trim().replace('\n', " ");
        Failure::Config(format!(
            "{name}{line}: invalid TOML: {msg}; write key = value, e.g. max_queued = 500"
        ))
    })?;
    let mut settings = Settings::default();
    for (key, raw) in &table {
        let text = scalar(raw).ok_or_else(|| {
            Failure::Config(format!(
                "{name}: key \"{key}\": expected a string, number or boolean (found {})",
                raw.type_str()
            ))
        })?;
        set(&mut settings, key, &text).map_err(|err| {
            Failure::Config(match err {
                SetError::Unknown => unknown_key(name, key),
                SetError::Value(msg) => format!("{name}: key \"{key}\": {msg}"),
            })
        })?;
    }
    Ok(settings)
}

/// A scalar TOML value as the text a flag would carry.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

enum SetError {
    Unknown,
    Value(String),
}

fn set(s: &mut Settings, key: &str, v: &str) -> Result<(), SetError> {
    fn p<T>(f: fn(&str) -> Result<T, String>, v: &str) -> Result<Option<T>, SetError> {
        f(v).map(Some).map_err(SetError::Value)
    }
    match key {
        "mqtt" => s.mqtt = p(value::addr, v)?,
        "mqtts" => s.mqtts = p(value::addr, v)?,
        "tls_cert" => s.tls_cert = p(value::path, v)?,
        "tls_key" => s.tls_key = p(value::path, v)?,
        "tls_client_ca" => s.tls_client_ca = p(value::path, v)?,
        "http" => s.http = p(value::addr, v)?,
        "https" => s.https = p(value::addr, v)?,
        "routes" => s.routes = p(value::path, v)?,
        "redis" => s.redis = p(value::text, v)?,
        "state_ttl" => s.state_ttl = p(value::duration, v)?,
        "users" => s.users = p(value::path, v)?,
        "jwt_secret" => s.jwt_secret = p(value::text, v)?,
        "jwt_public_key" => s.jwt_public_key = p(value::path, v)?,
        "acl" => s.acl = p(value::path, v)?,
        "max_keepalive" => s.max_keepalive = p(value::number::<u16>, v)?,
        "receive_maximum" => s.receive_maximum = p(value::number::<u16>, v)?,
        "max_packet_size" => s.max_packet_size = p(value::size, v)?,
        "max_connections" => s.max_connections = p(value::number::<usize>, v)?,
        "max_queued" => s.max_queued = p(value::number::<usize>, v)?,
        "allow_anonymous" => s.allow_anonymous = p(value::boolean, v)?,
        "max_connect_rate" => s.max_connect_rate = p(value::number::<u32>, v)?,
        "max_publish_rate" => s.max_publish_rate = p(value::number::<u32>, v)?,
        "log" => s.log = p(value::log_format, v)?,
        _ => return Err(SetError::Unknown),
    }
    Ok(())
}

/// `config.toml: unknown key "max_qeued" (did you mean "max_queued"?)`.
fn unknown_key(name: &str, key: &str) -> String {
    let normalised = key.trim().replace('-', "_").to_ascii_lowercase();
    let best = KEYS
        .iter()
        .map(|k| (strsim::jaro_winkler(&normalised, k), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, k)) if score >= 0.85 || normalised == k => {
            format!("{name}: unknown key \"{key}\" (did you mean \"{k}\"?)")
        }
        _ => format!(
            "{name}: unknown key \"{key}\": keys are the serve flag names with underscores, \
             listed in fleetmq.example.toml"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse("c.toml", text) {
            Err(Failure::Config(line)) => line,
            other => panic!("expected a config failure, got {other:?}"),
        }
    }

    #[test]
    fn every_key_is_accepted() {
        for key in KEYS {
            let v = match *key {
                "mqtt" | "mqtts" | "http" | "https" => "\"127.0.0.1:1\"",
                "state_ttl" => "\"2h\"",
                "max_packet_size" => "\"2MiB\"",
                "allow_anonymous" => "true",
                "log" => "\"json\"",
                k if k.starts_with("max_") || k == "receive_maximum" => "7",
                _ => "\"x\"",
            };
            parse("c.toml", &format!("{key} = {v}")).unwrap_or_else(|e| panic!("{key} = {v}: {e}"));
        }
    }

    #[test]
    fn values_are_typed() {
        let s = parse(
            "c.toml",
            "max_queued = 500\nstate_ttl = 90\nmax_packet_size = \"64KiB\"\nallow_anonymous = false\n",
        )
        .expect("parse");
        assert_eq!(s.max_queued, Some(500));
        assert_eq!(s.state_ttl, Some(std::time::Duration::from_secs(90)));
        assert_eq!(s.max_packet_size, Some(65536));
        assert_eq!(s.allow_anonymous, Some(false));
        assert_eq!(s.mqtt, None);
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let line = err("max_qeued = 5");
        assert_eq!(
            line,
            "c.toml: unknown key \"max_qeued\" (did you mean \"max_queued\"?)"
        );
        assert!(err("max-queued = 5").contains("did you mean \"max_queued\""));
        let far = err("colour = \"blue\"");
        assert!(far.contains("unknown key \"colour\"") && !far.contains("did you mean"));
    }

    #[test]
    fn bad_values_and_syntax_name_the_key_or_line() {
        let line = err("mqtt = \"nowhere\"");
        assert!(
            line.starts_with("c.toml: key \"mqtt\": invalid address"),
            "{line}"
        );
        let line = err("max_keepalive = 70000");
        assert!(
            line.contains("\"max_keepalive\"") && line.contains("65535"),
            "{line}"
        );
        let line = err("max_queued = -1");
        assert!(line.contains("\"max_queued\""), "{line}");
        let line = err("mqtt = [1, 2]");
        assert!(line.contains("(found array)"), "{line}");
        let line = err("max_queued = 1\nmqtt = \n");
        assert!(line.starts_with("c.toml:2: invalid TOML"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn unreadable_file_is_one_line() {
        match load(Path::new("/nonexistent/fleetmq.toml")) {
            Err(Failure::Config(line)) => {
                assert!(
                    line.starts_with("/nonexistent/fleetmq.toml: cannot read"),
                    "{line}"
                );
                assert!(!line.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
    }
}
