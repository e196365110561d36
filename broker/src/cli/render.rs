//! A resolved [`Config`] written back as config-file TOML, for `serve --print-config`: one line
//! per declared setting, in declaration order, each value in the form its parser reads back, so
//! the output is itself a valid `--config` file. An unset setting becomes a comment saying what
//! unset means (the `[default: ...]` its help ends in); a secret (`hide_env_values`) is shown as
//! `"<redacted>"`, or, for a URL with a password (`--postgres`), the URL with its password
//! redacted so the host stays visible.

use std::fmt::Write;

use crate::Config;

/// Each declared setting with its value as a TOML literal, `None` when unset.
///
/// # Errors
/// Only if a value could not be serialized, which the setting kinds never do.
pub fn entries(c: &Config) -> Result<Vec<(clap::Arg, Option<String>)>, toml::ser::Error> {
    let table = toml::Table::try_from(c)?;
    let entries = Config::declarations().into_iter().map(|arg| {
        let value = table.get(arg.get_id().as_str()).map(|v| {
            if arg.is_hide_env_values_set() {
                toml::Value::String(redact(v.as_str().unwrap_or_default())).to_string()
            } else {
                v.to_string()
            }
        });
        (arg, value)
    });
    Ok(entries.collect())
}

/// What leaving a setting out means, from the `[default: ...]` at the end of its help; `None`
/// for a setting with a `default_value` (clap shows that one itself).
pub fn unset_meaning(arg: &clap::Arg) -> Option<String> {
    let help = arg.get_help()?.to_string();
    let start = help.rfind("[default: ")?;
    help[start + "[default: ".len()..]
        .strip_suffix(']')
        .map(str::to_owned)
}

/// The whole configuration as TOML, one `key = value` line per setting.
///
/// # Errors
/// As [`entries`].
pub fn to_toml(c: &Config) -> Result<String, toml::ser::Error> {
    let mut out = String::from("# fleetmq resolved configuration\n");
    for (arg, value) in entries(c)? {
        let key = arg.get_id();
        // Writing to a String cannot fail.
        let _ = match (value, unset_meaning(&arg)) {
            (Some(v), _) => writeln!(out, "{key} = {v}"),
            (None, Some(off)) if off == "off" => writeln!(out, "# {key}: off"),
            (None, Some(meaning)) => writeln!(out, "# {key}: unset ({meaning})"),
            (None, None) => writeln!(out, "# {key}: unset"),
        };
    }
    Ok(out)
}

/// A secret as `--print-config` shows it: a URL's password only (`postgres://u:<redacted>@h/db`),
/// anything else whole.
fn redact(secret: &str) -> String {
    if let Some((scheme, rest)) = secret.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    "<redacted>".to_owned()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::file;
    use super::*;

    #[test]
    fn keys_match_the_file_keys_in_order() {
        let keys: Vec<_> = entries(&Config::default())
            .expect("serializes")
            .into_iter()
            .map(|(arg, _)| arg.get_id().to_string())
            .collect();
        assert_eq!(keys, file::keys());
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
        let text = to_toml(&c).expect("serializes");
        let back = file::parse("print", &text).expect("reads back");
        let back = Config::deserialize(back).expect("valid");
        assert_eq!(format!("{back:?}"), format!("{c:?}"));
    }

    #[test]
    fn unset_settings_say_what_unset_means_and_secrets_are_hidden() {
        let c = Config {
            jwt_secret: Some("hunter2".into()),
            ..Config::default()
        };
        let text = to_toml(&c).expect("serializes");
        assert!(text.contains("\n# mqtts: off\n"), "{text}");
        assert!(
            text.contains("\n# routes: unset (bundled sample routes)\n"),
            "{text}"
        );
        assert!(text.contains("\njwt_secret = \"<redacted>\"\n"), "{text}");
        assert!(!text.contains("hunter2"));
    }
}
