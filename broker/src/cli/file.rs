//! The `--config FILE` layer: a flat TOML table whose keys are the [`Config`] field names, the
//! `serve` flag names with underscores (`max_queued = 500`). Each value is checked here, key by
//! key, through `Config`'s own deserializer, which reads it with the flag's parser: a file accepts
//! `state_ttl = "1h"` or `state_ttl = 3600` just as `--state-ttl` does. Every problem is one line
//! naming the file, the key and the fix.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use toml::{Table, Value};

use super::failure::Failure;
use crate::Config;

/// Config files are a few hundred bytes; anything past this is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads and checks a config file; the table holds only known keys with valid values.
///
/// # Errors
/// [`Failure::Config`] naming the file (and key) when it cannot be read, is not TOML, or holds an
/// unknown key or a bad value.
pub fn load(path: &Path) -> Result<Table, Failure> {
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

/// Parses and checks config text; `name` is used in messages.
///
/// # Errors
/// As [`load`].
pub fn parse(name: &str, text: &str) -> Result<Table, Failure> {
    let table: Table = toml::from_str(text).map_err(|err| {
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
    let keys = keys();
    for (key, value) in &table {
        if !keys.contains(key) {
            return Err(Failure::Config(unknown_key(name, key, &keys)));
        }
        check_value(key, value)
            .map_err(|msg| Failure::Config(format!("{name}: key \"{key}\": {msg}")))?;
    }
    Ok(table)
}

/// Every key a config file may hold, in declaration order.
pub fn keys() -> Vec<String> {
    Config::declarations()
        .iter()
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// Reads one known key's value the way the whole file will be read, so a bad value is reported
/// with its key rather than somewhere in the table.
fn check_value(key: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::String(_) | Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {}
        other => {
            return Err(format!(
                "expected a string, number or boolean (found {})",
                other.type_str()
            ));
        }
    }
    let one = Table::from_iter([(key.to_owned(), value.clone())]);
    Config::deserialize(one)
        .map(drop)
        .map_err(|err| err.message().to_owned())
}

/// `config.toml: unknown key "max_qeued" (did you mean "max_queued"?)`.
fn unknown_key(name: &str, key: &str, keys: &[String]) -> String {
    let normalised = key.trim().replace('-', "_").to_ascii_lowercase();
    let best = keys
        .iter()
        .map(|k| (strsim::jaro_winkler(&normalised, k), k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, k)) if score >= 0.85 || normalised == *k => {
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

    fn config(text: &str) -> Config {
        let table = parse("c.toml", text).expect("parse");
        Config::deserialize(table).expect("valid")
    }

    #[test]
    fn every_key_is_accepted() {
        // One value of each kind the settings take; every declared key must accept one of them,
        // so a new setting needs no edit here.
        const SAMPLES: &[&str] = &[
            "\"127.0.0.1:1\"",
            "\"2h\"",
            "\"2MiB\"",
            "true",
            "\"json\"",
            "7",
            "0.5",
            "\"x\"",
        ];
        for key in keys() {
            let errors: Vec<String> = SAMPLES
                .iter()
                .map(|v| parse("c.toml", &format!("{key} = {v}")).map_err(|e| format!("{v}: {e}")))
                .filter_map(Result::err)
                .collect();
            assert!(
                errors.len() < SAMPLES.len(),
                "{key} accepts none of the samples: {errors:?}"
            );
        }
    }

    #[test]
    fn values_are_typed() {
        let c = config(
            "max_queued = 500\nstate_ttl = 90\nmax_packet_size = \"64KiB\"\nallow_anonymous = false\n",
        );
        assert_eq!(c.max_queued, 500);
        assert_eq!(c.state_ttl, std::time::Duration::from_secs(90));
        assert_eq!(c.max_packet_size, 65536);
        assert_eq!(c.allow_anonymous, Some(false));
        assert_eq!(c.mqtt, Config::default().mqtt);
        assert_eq!(c.mqtts, None);
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
        let line = err("state_ttl = 1.5");
        assert!(line.contains("invalid duration \"1.5\""), "{line}");
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
