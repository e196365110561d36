//! What can make `fleetmq` exit non-zero, and with which code: bad configuration exits 2 with one
//! line naming the file/key/port and the fix (docs/configuration.md#exit-codes); anything else
//! exits 1.

use std::fmt;

use crate::Error;

/// Exit code for bad configuration (docs/configuration.md#exit-codes), the same as clap's for a bad
/// flag.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_RUNTIME: u8 = 1;

/// Why a command failed. `Display` is one line, printed after `fleetmq: `.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration: a flag, env value, config key, file or port. Exit code 2.
    Config(String),
    /// Anything else, with its context chain. Exit code 1.
    Runtime(anyhow::Error),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => EXIT_CONFIG,
            Failure::Runtime(_) => EXIT_RUNTIME,
        }
    }

    /// Sorts a broker error: start-up problems the user can fix are configuration (exit 2).
    pub fn from_broker(err: Error, doing: &'static str) -> Failure {
        match err {
            Error::Io(io) => Failure::Runtime(anyhow::Error::new(io).context(doing)),
            other => Failure::Config(other.to_string()),
        }
    }

    /// One line for a clap error. A bad value that came from a `FLEETMQ_*` variable names the
    /// variable, since the flag it is reported under was never typed.
    pub fn from_clap(err: &clap::Error) -> Failure {
        use clap::error::{ContextKind, ContextValue};
        let rendered = err.render().to_string();
        let first = rendered
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_string();
        let arg = match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        let flag = arg.split([' ', '=']).next().unwrap_or("");
        let typed = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        let env = flag
            .strip_prefix("--")
            .map(|name| format!("FLEETMQ_{}", name.replace('-', "_").to_uppercase()));
        let line = match env {
            Some(env) if !typed && std::env::var_os(&env).is_some() => {
                format!("{env}: {first}; fix or unset {env}")
            }
            _ => format!("{first}; see fleetmq --help"),
        };
        Failure::Config(line)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(line) => f.write_str(line),
            // `{:#}` joins the context chain on one line: "running the broker: i/o error: ...".
            Failure::Runtime(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::Runtime(err)
    }
}
