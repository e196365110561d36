//! fleetmq-bench: drives any MQTT broker (fleetmq, Mosquitto, rumqttd) with the same workloads
//! and reports throughput, latency percentiles and memory per connection (docs/bench.md).
//!
//! # Layout
//! - `client`: a lean tokio MQTT client on `fleetmq-codec` (connect, subscribe, publish, acks).
//! - `throughput`: raw pub/sub rate and latency.
//! - `drive`: simulated buses publishing locations, WebSocket or MQTT watchers receiving states.
//! - `connections`: many idle clients, connect rate and the broker's memory per connection.
//! - `cpu`: the broker processes' CPU time from `/proc/PID/stat` (`drive --pid`).
//! - `history`: rows/s through fleetmq's PostgreSQL history writer and the one-day query time.
//! - `ws_connections`: many idle `/ws` watchers, connect rate and the servers' memory per watcher.
//! - `report`: latency percentiles, progress line, table and JSON output.
//! - `target`: loopback-only address checks.

mod client;
mod connections;
mod cpu;
mod drive;
mod history;
mod report;
mod target;
mod throughput;
mod ws_connections;

use clap::{Parser, Subcommand};

/// Load generator and measurement for MQTT brokers; every run stops by itself and only targets
/// loopback addresses.
#[derive(Debug, Parser)]
#[command(name = "fleetmq-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Raw pub/sub messages per second and publish→receive latency.
    Throughput(throughput::Args),
    /// Simulated buses publish locations; watchers receive processed states.
    Drive(drive::Args),
    /// Opens N idle clients; reports connect rate and broker memory per connection.
    Connections(connections::Args),
    /// Rows per second through fleetmq's PostgreSQL history writer; one-day query time.
    History(history::Args),
    /// Opens N idle `/ws` watchers, one vehicle each; reports connect rate and memory per watcher.
    WsConnections(ws_connections::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetmq-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Throughput(args) => throughput::run(args).await.map(|_| ()),
            Command::Drive(args) => drive::run(args).await.map(|_| ()),
            Command::Connections(args) => connections::run(args).await.map(|_| ()),
            Command::History(args) => history::run(args).await.map(|_| ()),
            Command::WsConnections(args) => ws_connections::run(args).await.map(|_| ()),
        }
    });
    // Idle client sockets are closed by dropping the runtime, without waiting on tasks.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetmq-bench: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
