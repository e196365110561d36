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
    prepare(args.count, "clients")?;
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
    let (streams, connect_secs) = join_all(tasks, args.count, start, "clients").await;
    drop(progress);
    let rss_after = match args.pid {
        Some(pid) => settled_rss(pid).await?,
        None => 0,
    };
    let figures = Figures::new(
        streams.len() as u64,
        connect_secs,
        args.pid.map(|_| (rss_before, rss_after)),
    );
    figures.report("connections", &args.mqtt, rss_before, args.json.as_deref())?;
    if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    drop(streams);
    Ok(figures)
}

impl Figures {
    /// Prints the table titled `title` for `target` and writes the JSON when asked.
    ///
    /// # Errors
    /// The JSON file cannot be written.
    pub(crate) fn report(
        &self,
        title: &str,
        target: &str,
        rss_before: u64,
        json: Option<&std::path::Path>,
    ) -> Result<()> {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        let rows = vec![
            ("server".to_string(), target.to_string()),
            ("connections".to_string(), self.connections.to_string()),
            (
                "connect/s".to_string(),
                format!("{:.0}", self.connect_per_sec),
            ),
            ("server RSS before".to_string(), mib(rss_before)),
            ("server RSS after".to_string(), mib(self.rss_bytes)),
            (
                "RSS per connection".to_string(),
                format!("{:.0} B", self.rss_per_connection_bytes),
            ),
        ];
        report::print_table(title, &rows);
        report::write_json(json, self)
    }

    /// Figures of `n` connections opened in `connect_secs`, with the server RSS `(before, after)`
    /// when it was measured.
    pub(crate) fn new(n: u64, connect_secs: f64, rss: Option<(u64, u64)>) -> Figures {
        let (before, after) = rss.unwrap_or((0, 0));
        Figures {
            connections: n,
            connect_per_sec: n as f64 / connect_secs.max(1e-9),
            rss_bytes: after,
            rss_per_connection_bytes: if n == 0 || rss.is_none() {
                0.0
            } else {
                after.saturating_sub(before) as f64 / n as f64
            },
        }
    }
}

/// Checks `count` and raises the soft RLIMIT_NOFILE to the hard limit, warning when `count`
/// `what` will not fit.
///
/// # Errors
/// `count` out of range, or the limit cannot be raised.
pub(crate) fn prepare(count: usize, what: &str) -> Result<()> {
    if count == 0 || count > MAX_COUNT {
        bail!("--count must be between 1 and {MAX_COUNT}");
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    if (limit as usize) < count + 64 {
        eprintln!("warning: RLIMIT_NOFILE is {limit}; {count} {what} will not all fit");
    }
    Ok(())
}

/// Waits for every connect task; returns the connections made and the seconds since `start`,
/// after printing how many of `count` `what` failed and the first error.
pub(crate) async fn join_all<T: 'static>(
    mut tasks: JoinSet<Result<T>>,
    count: usize,
    start: Instant,
    what: &str,
) -> (Vec<T>, f64) {
    let mut made = Vec::with_capacity(count);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(s)) => made.push(s),
            Ok(Err(e)) => {
                first_error.get_or_insert(format!("{e:#}"));
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = &first_error {
        eprintln!(
            "{} of {count} {what} failed; first error: {e}",
            count - made.len()
        );
    }
    (made, secs)
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
pub(crate) async fn settled_rss(pid: u32) -> Result<u64> {
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
