//! The documentation of the settings against their declarations on [`Config`]: the README's
//! configuration table (flag, variable, TOML key, default, row by row in declaration order) and
//! `fleetmq.example.toml` (every key, commented out, with its default, read the same as a flag).

use clap::{Args, FromArgMatches};
use serde::Deserialize;

use super::{file, render};
use crate::Config;

const README: &str = include_str!("../../../README.md");
const EXAMPLE: &str = include_str!("../../../fleetmq.example.toml");

/// The cells of the README's configuration table, one `Vec` per row, backticks kept.
fn readme_rows() -> Vec<Vec<String>> {
    let header = "| flag | env | TOML key | default | meaning |";
    let mut lines = README.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "README lacks the table {header:?}");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The README row a declaration calls for: flag, env, key, and what the default cell begins with.
fn expected_row(arg: &clap::Arg) -> [String; 4] {
    let long = arg.get_long().expect("every setting has a --flag");
    let value_name = arg
        .get_value_names()
        .and_then(<[_]>::first)
        .expect("every setting has a value name");
    let env = arg.get_env().expect("every setting has a variable");
    let default = match arg.get_default_values() {
        [d] => format!("`{}`", d.to_string_lossy()),
        _ => render::unset_meaning(arg).unwrap_or_else(|| {
            panic!("--{long}: no default_value and no [default: ...] in its help")
        }),
    };
    [
        format!("`--{long} {value_name}`"),
        format!("`{}`", env.to_string_lossy()),
        format!("`{}`", arg.get_id()),
        default,
    ]
}

#[test]
fn readme_table_matches_the_declarations() {
    let rows: Vec<_> = readme_rows()
        .into_iter()
        // `--config FILE` is the file itself, not a setting in it.
        .filter(|cells| cells.get(2).map(String::as_str) != Some("—"))
        .collect();
    let declared = Config::declarations();
    let mut wrong = Vec::new();
    for (i, arg) in declared.iter().enumerate() {
        let want = expected_row(arg);
        let Some(row) = rows.get(i) else {
            wrong.push(format!("missing row {}: {}", i + 1, want.join(" | ")));
            continue;
        };
        let same = row.len() == 5
            && row[..3] == want[..3]
            && (row[3] == want[3] || row[3].starts_with(&format!("{} ", want[3])));
        if !same {
            wrong.push(format!(
                "row {}: README has {:?}, the declaration says {:?} (default cell starting so)",
                i + 1,
                &row[..row.len().min(4)],
                want
            ));
        }
    }
    for row in rows.iter().skip(declared.len()) {
        wrong.push(format!("README row without a declaration: {row:?}"));
    }
    assert!(
        wrong.is_empty(),
        "README configuration table and Config disagree:\n{}",
        wrong.join("\n")
    );
}

/// `Failure::from_clap` names the variable behind a bad value by this rule.
#[test]
fn variables_are_fleetmq_and_the_flag_in_upper_case() {
    for arg in Config::declarations() {
        let long = arg.get_long().expect("long");
        let env = arg.get_env().expect("env").to_string_lossy().into_owned();
        assert_eq!(
            env,
            format!("FLEETMQ_{}", long.replace('-', "_").to_uppercase())
        );
        assert_eq!(
            long.replace('-', "_"),
            arg.get_id().as_str(),
            "key of --{long}"
        );
    }
}

/// `Config` from one `--flag=text`, with the environment ignored.
fn from_flag(long: &str, text: &str) -> Result<Config, clap::Error> {
    let cmd = Config::augment_args(clap::Command::new("fleetmq").no_binary_name(true))
        .mut_args(|arg| arg.env(None));
    let matches = cmd.try_get_matches_from([format!("--{long}={text}")])?;
    Config::from_arg_matches(&matches)
}

/// `fleetmq.example.toml` lists every key, each commented out with its default (or, for a setting
/// that is off by default, an example value), and each value reads the same as the flag would.
#[test]
fn example_file_lists_every_key_with_its_default() {
    let defaults = render::entries(&Config::default()).expect("serializes");
    let mut keys = Vec::new();
    for (arg, default) in defaults {
        let key = arg.get_id().to_string();
        let prefix = format!("# {key} = ");
        let line = EXAMPLE
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("fleetmq.example.toml lacks \"{prefix}...\""));
        let shown = line[prefix.len()..].trim();
        let table = file::parse("example", &format!("{key} = {shown}"))
            .unwrap_or_else(|e| panic!("example line {line:?}: {e}"));
        let from_file = Config::deserialize(table).expect("checked");
        let text = match toml::from_str::<toml::Table>(&format!("v = {shown}")).expect("toml")["v"]
        {
            toml::Value::String(ref s) => s.clone(),
            ref other => other.to_string(),
        };
        let long = arg.get_long().expect("long");
        let from_flag = from_flag(long, &text)
            .unwrap_or_else(|e| panic!("--{long}={text} (from {line:?}): {e}"));
        assert_eq!(
            format!("{from_file:?}"),
            format!("{from_flag:?}"),
            "{key} = {shown} and --{long}={text} differ: is the serde kind the value_parser's?"
        );
        if let Some(default) = default {
            assert_eq!(shown, default, "default of {key}");
        }
        keys.push(key);
    }
    for line in EXAMPLE.lines() {
        let key = line.strip_prefix("# ").and_then(|l| l.split_once(" = "));
        if let Some((key, _)) =
            key.filter(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        {
            assert!(
                keys.iter().any(|k| k == key),
                "example key {key:?} is not declared"
            );
        }
    }
}
