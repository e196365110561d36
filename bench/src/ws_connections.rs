//! `ws-connections` (docs/bench.md#ws-connections): opens N idle WebSocket watchers on the
//! bridge's `/ws`, each subscribed to one vehicle, and reports the connect rate and the servers'
//! resident memory per connection (VmRSS of every `--pid`, summed, before and after).
//!
//! Like `connections`, it raises RLIMIT_NOFILE to the hard limit and spreads clients over
//! 127.0.0.2, 127.0.0.3, … past three quarters of the ephemeral port range. Its own WebSocket
//! buffers are kept small (a few KiB read, no write batching) so 20,000 watchers fit in the
//! bench too. A watcher counts as connected once its subscription's snapshot arrived. During
//! `--hold` every watcher is read (and so answers the bridge's pings).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::HANDSHAKE_TIMEOUT;
use crate::connections::{
    Figures, join_all, ports_per_address, prepare, settled_rss, source_address, vm_rss,
};
use crate::report::{Counters, Progress};

/// The bench's own read buffer per watcher: idle watchers read one small snapshot.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// The `ws-connections` workload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Bridge `/ws` URLs, `ws://HOST:PORT/ws[,...]` (loopback only); watchers go round-robin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ws: Vec<String>,
    /// Idle watchers to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Server process ids, to sum their VmRSS from /proc/PID/status.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Vehicle ids the watchers subscribe to: watcher i follows `{vehicle_prefix}{i % vehicles}`.
    #[arg(long, default_value = "bench-ws-")]
    pub vehicle_prefix: String,
    /// Distinct vehicles followed (0: one per watcher).
    #[arg(long, default_value_t = 0)]
    pub vehicles: usize,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to hold the watchers open after the measurement.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// Write the figures as one JSON object to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

type Watcher = WebSocketStream<TcpStream>;

/// Runs the workload and prints the table; writes JSON when asked.
///
/// # Errors
/// Bad arguments, no reachable bridge, or an unreadable `/proc/PID/status`.
pub async fn run(args: Args) -> Result<Figures> {
    let targets: Vec<(String, SocketAddr)> = args
        .ws
        .iter()
        .map(|u| Ok((u.clone(), crate::target::loopback_ws(u)?)))
        .collect::<Result<_>>()?;
    prepare(args.count, "watchers")?;
    let per_addr = ports_per_address();
    let spread = targets.iter().all(|(_, a)| a.is_ipv4()) && args.count > per_addr;
    let rss_before = total_rss(&args.pid)?;
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone(), "connected", "failed");
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let vehicles = if args.vehicles == 0 {
        args.count
    } else {
        args.vehicles
    };
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..args.count {
        let (url, addr) = targets[i % targets.len()].clone();
        let bind = if spread {
            Some(source_address(i, per_addr)?)
        } else {
            None
        };
        let vehicle = format!("{}{}", args.vehicle_prefix, i % vehicles);
        let permit = permits.clone().acquire_owned().await?;
        let counters = counters.clone();
        tasks.spawn(async move {
            let result = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                watcher(&url, addr, bind.map(|ip| SocketAddr::new(ip, 0)), &vehicle),
            )
            .await
            .context("connect and subscribe timed out")
            .and_then(|r| r);
            drop(permit);
            match &result {
                Ok(_) => counters.a.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.b.fetch_add(1, Ordering::Relaxed),
            };
            result
        });
    }
    let (watchers, connect_secs) = join_all(tasks, args.count, start, "watchers").await;
    drop(progress);
    let mut rss_after = 0;
    for pid in &args.pid {
        rss_after += settled_rss(*pid).await?;
    }
    let figures = Figures::new(
        watchers.len() as u64,
        connect_secs,
        (!args.pid.is_empty()).then_some((rss_before, rss_after)),
    );
    figures.report(
        "ws-connections",
        &args.ws.join(","),
        rss_before,
        args.json.as_deref(),
    )?;
    if args.hold > 0 {
        hold(watchers, Duration::from_secs(args.hold)).await;
    }
    Ok(figures)
}

/// Keeps the watchers open for `time`, each read by its own task: tungstenite answers the
/// bridge's pings only while the stream is read, and the bridge drops a watcher silent for its
/// idle timeout (90 s by default), so unread watchers would not outlive a long `--hold`. What
/// arrives (the followed vehicle's updates) is discarded.
async fn hold(watchers: Vec<Watcher>, time: Duration) {
    let mut readers = JoinSet::new();
    for mut ws in watchers {
        readers.spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    }
    let total = readers.len();
    tokio::time::sleep(time).await;
    let mut closed = 0;
    while readers.try_join_next().is_some() {
        closed += 1;
    }
    readers.shutdown().await;
    eprintln!("held {time:?}: {closed} of {total} watchers closed by the server meanwhile");
}

/// Summed VmRSS of `pids` (0 for none).
fn total_rss(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|p| vm_rss(*p)).sum()
}

/// Connects one watcher (from `bind` when given), subscribes it to `vehicle` and waits for the
/// snapshot.
async fn watcher(
    url: &str,
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    vehicle: &str,
) -> Result<Watcher> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(b) = bind {
        socket.bind(b).with_context(|| format!("bind {b}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .with_context(|| format!("WebSocket handshake with {url}"))?;
    let sub = serde_json::json!({"op": "subscribe", "id": "s", "vehicle": vehicle});
    ws.send(Message::Text(sub.to_string().into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"snapshot""#) => {
                return Ok(ws);
            }
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"error""#) => {
                bail!("bridge refused the subscription: {}", t.as_str())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("bridge closed the WebSocket before the snapshot"),
        }
    }
}
