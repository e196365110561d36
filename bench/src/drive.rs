//! `drive`: simulated buses publish SPEC §4 locations; watchers receive processed states.

use anyhow::Result;

/// The `drive` workload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Broker address, HOST:PORT (loopback only).
    #[arg(long)]
    pub mqtt: String,
}

/// Runs the workload.
pub async fn run(_args: Args) -> Result<()> {
    anyhow::bail!("drive: not built yet")
}
