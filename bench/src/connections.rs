//! `connections`: opens N idle MQTT 3.1.1 clients (keep-alive 65,535 s), measures the connect rate and
//! the broker's resident memory per connection from `/proc/PID/status` before and after.
//!
//! The soft RLIMIT_NOFILE is raised to the hard limit first. One source address has only the
//! ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`) to give; beyond about three
//! quarters of it, clients bind to 127.0.0.2, 127.0.0.3, … before connecting. Once every client
//! has its CONNACK the halves are joined back into the bare socket, so the bench holds no
//! buffers, and the broker's RSS is read once it has settled.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetmq_codec::Protocol;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{self, ConnectOptions};
use crate::report::{self, Counters, Progress};

/// Most connections the bench opens in one run.
const MAX_COUNT: usize = 1_000_000;
/// How long the broker's RSS may take to settle after the last CONNACK.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// The `connections` workload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Broker address, HOST:PORT (loopback only).
    #[arg(long)]
    pub mqtt: String,
    /// Idle clients to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Broker process id, to read its VmRSS from /proc/PID/status.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connects in flight at once. More than a broker's listen backlog (Mosquitto: 100) makes
    /// the kernel drop SYNs, which are retried after 1 s and dominate the connect rate.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to hold the clients open after the measurement.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// Write the figures as one JSON object to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// docs/bench.md `connections` figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Clients that got a successful CONNACK.
    pub connections: u64,
    /// `connections` over the time it took to open them all.
    pub connect_per_sec: f64,
    /// Broker VmRSS with every client connected, bytes (0 without `--pid`).
    pub rss_bytes: u64,
    /// (RSS after − RSS before) / connections, bytes (0 without `--pid`).
    pub rss_per_connection_bytes: f64,
}

/// Runs the workload and prints the table; writes JSON when asked.
///
/// # Errors
/// Bad arguments, an unreachable broker, or an unreadable `/proc/PID/status`.
pub async fn run(args: Args) -> Result<Figures> {
    let addr = crate::target::loopback(&args.mqtt)?;
    if args.count == 0 || args.count > MAX_COUNT {
        bail!("--count must be between 1 and {MAX_COUNT}");
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    if (limit as usize) < args.count + 64 {
        eprintln!(
            "warning: RLIMIT_NOFILE is {limit}; {} clients will not all fit",
            args.count
        );
    }
    let per_addr = ports_per_address();
    let spread = addr.is_ipv4() && args.count > per_addr;
    let rss_before = match args.pid {
        Some(pid) => vm_rss(pid)?,
        None => 0,
    };
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone(), "connected", "failed");
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let run_id = std::process::id();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..args.count {
        let mut opts = ConnectOptions::new(Protocol::V311, format!("bench-idle-{run_id}-{i}"));
        if spread {
            opts.bind = Some(source_address(i, per_addr)?);
        }
        let permit = permits.clone().acquire_owned().await?;
        let counters = counters.clone();
        tasks.spawn(async move {
            let result = client::connect(addr, &opts)
                .await
                .and_then(|(r, w, _)| client::into_stream(r, w));
            drop(permit);
            match &result {
                Ok(_) => counters.a.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.b.fetch_add(1, Ordering::Relaxed),
            };
            result
        });
    }
    let mut streams: Vec<TcpStream> = Vec::with_capacity(args.count);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(s)) => streams.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(format!("{e:#}"));
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let connect_secs = start.elapsed().as_secs_f64();
    drop(progress);
    if let Some(e) = &first_error {
        eprintln!(
            "{} of {} clients failed; first error: {e}",
            args.count - streams.len(),
            args.count
        );
    }
    let rss_after = match args.pid {
        Some(pid) => settled_rss(pid).await?,
        None => 0,
    };
    let n = streams.len() as u64;
    let figures = Figures {
        connections: n,
        connect_per_sec: n as f64 / connect_secs.max(1e-9),
        rss_bytes: rss_after,
        rss_per_connection_bytes: if n == 0 || args.pid.is_none() {
            0.0
        } else {
            rss_after.saturating_sub(rss_before) as f64 / n as f64
        },
    };
    let rows = vec![
        ("broker".to_string(), args.mqtt.clone()),
        ("connections".to_string(), figures.connections.to_string()),
        (
            "connect/s".to_string(),
            format!("{:.0}", figures.connect_per_sec),
        ),
        (
            "broker RSS before".to_string(),
            format!("{:.1} MiB", rss_before as f64 / 1048576.0),
        ),
        (
            "broker RSS after".to_string(),
            format!("{:.1} MiB", rss_after as f64 / 1048576.0),
        ),
        (
            "RSS per connection".to_string(),
            format!("{:.0} B", figures.rss_per_connection_bytes),
        ),
    ];
    report::print_table("connections", &rows);
    report::write_json(args.json.as_deref(), &figures)?;
    if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    drop(streams);
    Ok(figures)
}

/// Ephemeral ports one source address can use, with a quarter kept back for everyone else.
pub(crate) fn ports_per_address() -> usize {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let size = range
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|v| v.parse::<usize>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            hi.checked_sub(lo)
        })
        .unwrap_or(28_000);
    (size * 3 / 4).max(1)
}

/// 127.0.0.2 for the first `per_addr` clients, 127.0.0.3 for the next, and so on.
pub(crate) fn source_address(i: usize, per_addr: usize) -> Result<IpAddr> {
    let n = 2 + i / per_addr.max(1);
    let (b, c) = (n / 256, n % 256);
    if b > 255 {
        bail!("too many clients for 127.0.0.0/8 source addresses");
    }
    Ok(IpAddr::V4(Ipv4Addr::new(127, 0, b as u8, c as u8)))
}

/// VmRSS of `pid` in bytes.
///
/// # Errors
/// The process does not exist or its status has no VmRSS line.
pub fn vm_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// RSS once two readings 200 ms apart differ by less than 1 % (at most [`SETTLE_MAX`]).
async fn settled_rss(pid: u32) -> Result<u64> {
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = vm_rss(pid)?;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = vm_rss(pid)?;
        if now.abs_diff(last) * 100 < last.max(1) || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_line_parses() {
        let status = "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nThreads: 2\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_positive() -> Result<()> {
        assert!(vm_rss(std::process::id())? > 0);
        Ok(())
    }

    #[test]
    fn source_addresses_step_per_block() -> Result<()> {
        assert_eq!(
            source_address(0, 100)?,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_address(99, 100)?,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_address(100, 100)?,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
        );
        assert_eq!(
            source_address(25_500, 100)?,
            IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))
        );
        Ok(())
    }
}
