//! Errors of the test harness: a server that would not start, a socket that failed, a deadline
//! that passed.

use std::time::Duration;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The `fleetmq` binary is not where we looked.
    #[error("fleetmq binary not found at {0}: run `cargo build -p fleetmq` (or set FLEETMQ_BIN)")]
    BinaryMissing(String),
    /// The server exited or stayed silent instead of printing its listening line.
    #[error("fleetmq did not start: {0}")]
    Start(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A wait ran past its deadline.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// `/proc/PID/status` had no usable `VmRSS` line.
    #[error("cannot read the server's memory: {0}")]
    Proc(String),
    /// The peer sent bytes the harness could not frame.
    #[error("bad packet from server: {0}")]
    BadPacket(String),
}
