//! The `fleetmq` command line: subcommands, configuration layering (flag > `FLEETMQ_*` env > TOML
//! file > default) and exit codes. `main.rs` only calls [`Cli::parse_or_exit`] and [`run`].
//!
//! Every setting is declared once, on [`Config`](crate::Config) (see `config` for how to add one);
//! the modules here only layer, print and check what those declarations say.
//!
//! # Layout
//! - `settings`: the `serve` arguments and how the layers resolve to a `Config`.
//! - `file`: the `--config` TOML file, checked key by key, with "did you mean" for unknown keys.
//! - `render`: a resolved `Config` as TOML (`serve --print-config`).
//! - `docs` (tests only): the README configuration table and `fleetmq.example.toml` against the
//!   declarations.
//! - `routes`: `routes check FILE`.
//! - `serve`: tracing, signals, bind, the "fleetmq listening" line, run until shutdown.
//! - `passwd`: argon2id hashing for the users file ([`hash_password`]).
//! - `failure`: what went wrong and which exit code it gets ([`Failure`]).

#[cfg(test)]
mod docs;
mod failure;
mod file;
mod passwd;
mod render;
mod routes;
mod serve;
mod settings;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use failure::Failure;
pub use passwd::{PasswordError, hash_password};
pub use settings::{Given, ServeArgs};

/// `fleetmq`: an MQTT v5 broker for vehicle fleets.
#[derive(Debug, Parser)]
#[command(name = "fleetmq", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of docs/configuration.md#commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Run the broker with simulated buses on the sample routes; the map is at the --http address.
    Demo(DemoArgs),
    /// Write a development CA, a server certificate (localhost, 127.0.0.1, ::1) and a client
    /// certificate into a directory.
    Certs(CertsArgs),
    /// Read a password from stdin (one line) and print its argon2id hash for the users file.
    Passwd,
    /// Route network files.
    #[command(subcommand)]
    Routes(RoutesCommand),
}

/// `fleetmq demo`: every `serve` flag plus the number of simulated buses.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Number of simulated buses.
    #[arg(long, env = "FLEETMQ_BUSES", value_name = "N", default_value_t = 12)]
    pub buses: usize,
}

/// `fleetmq certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory to write the PEM files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Common name of the client certificate: the vehicle id it authenticates as.
    #[arg(long, value_name = "NAME", default_value = fleetmq_certs::DEFAULT_CLIENT_CN)]
    pub client_cn: String,
    /// Replace files that already exist in DIR.
    #[arg(long)]
    pub force: bool,
}

/// `fleetmq routes ...`.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Validate a GeoJSON or GTFS (zip or folder) route file and print a summary.
    Check {
        /// The route file or GTFS folder.
        file: PathBuf,
    },
}

impl Cli {
    /// Parses `std::env::args`. `--help` and `--version` print and exit 0; a bad flag or env value
    /// prints one line naming it and exits 2.
    pub fn parse_or_exit() -> Cli {
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(err) => {
                use clap::error::ErrorKind;
                match err.kind() {
                    ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
                    _ => {
                        let failure = Failure::from_clap(&err);
                        let _ = writeln!(std::io::stderr(), "fleetmq: {failure}");
                        std::process::exit(i32::from(failure.exit_code()));
                    }
                }
            }
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// A [`Failure`] whose [`Failure::exit_code`] the binary exits with after printing it.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => serve::serve(args, None),
        Command::Demo(args) => serve::serve(args.serve, Some(args.buses)),
        Command::Certs(args) => certs(&args),
        Command::Passwd => passwd::run(),
        Command::Routes(RoutesCommand::Check { file }) => routes::check(&file),
    }
}

fn certs(args: &CertsArgs) -> Result<(), Failure> {
    let overwrite = if args.force {
        fleetmq_certs::Overwrite::Yes
    } else {
        fleetmq_certs::Overwrite::No
    };
    let paths = fleetmq_certs::generate_with(&args.out, &args.client_cn, overwrite).map_err(
        |err| match err {
            fleetmq_certs::CertError::Exists(path) => Failure::Config(format!(
                "{} already exists: pass --force to replace it, or choose another --out",
                path.display()
            )),
            other => Failure::Config(other.to_string()),
        },
    )?;
    let dir = args.out.display();
    let mut out = std::io::stdout().lock();
    let written = writeln!(
        out,
        "wrote {ca}, {ca_key}, {server}, {server_key}, {client}, {client_key} (client CN {cn})\n\
         try: fleetmq serve --mqtts 127.0.0.1:8883 --tls-cert {dir}/server.pem --tls-key {dir}/server-key.pem\n\
         and: mosquitto_sub -h localhost -p 8883 --cafile {dir}/ca.pem -t 'vehicles/#' -v",
        ca = paths.ca.display(),
        ca_key = paths.ca_key.display(),
        server = paths.server.display(),
        server_key = paths.server_key.display(),
        client = paths.client.display(),
        client_key = paths.client_key.display(),
        cn = args.client_cn,
    );
    written.map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("writing to stdout")))
}
