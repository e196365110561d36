//! `drive`: N simulated buses publish docs/topics-and-payloads.md#location-updates locations to
//! `fleet/{id}/location`; M watchers (WebSocket clients of the bridge's `/ws` subscribing to
//! routes, or MQTT subscribers of `vehicles/#`) receive the processed states.
//!
//! Driver `i` is vehicle `b{run}-{i}` on route `i mod R` of the bundled network (the broker's
//! default routes), driven by `geo_engine::Simulator` at 10 m/s with 2 m noise and no dwell (so
//! every fix is meant to be forwarded: no jitter, no duplicates, no invalid fixes). A fix's `ts`
//! is the wall clock at send time in ms, strictly increasing per vehicle; latency is matched
//! exactly through the [`ledger`]. Drivers start spread evenly over one interval so the load is
//! smooth. Watcher `j` subscribes to route `j mod R`; with `--watch riders=..,routes=..,fleet=..`
//! the WebSocket watchers are that [`mix`] instead, and the latency is also reported per kind.
//! With `--batch` every WebSocket watcher asks for batched `updates` frames. With `--pid` the
//! broker processes' CPU time (`/proc/PID/stat`) from the drivers' start to the watchers' end is
//! divided by the updates sent. `--mqtt A,B,...` and `--ws URL,URL,...` spread drivers and
//! watchers round-robin over several nodes (driver `i` on address `i mod n`, watcher `j` on `j mod n`).
//!
//! With `--http URL` the drivers post the same fixes to `URL/api/v1/vehicles/{id}/location`
//! instead (docs/ingest-http.md), one keep-alive HTTP/1.1 connection each; watchers are unchanged,
//! so the latency is the same publish→receive measure in both modes.
//!
//! # Layout
//! - [`ledger`]: sends and receipts per vehicle, latency lookup and the `lost` count.
//! - [`driver`]: simulated buses as MQTT clients, in lanes of one task each; the fixes and
//!   schedule both drivers share.
//! - [`http_driver`]: one simulated bus posting over HTTP.
//! - [`mix`]: the `--watch` watcher mix and what each watcher subscribes to.
//! - [`scan`]: reads each received state's `vehicle` and `ts` without a whole JSON parse.
//! - [`watcher`]: WebSocket and MQTT watchers.

pub mod driver;
pub mod http_driver;
pub mod ledger;
pub mod mix;
pub mod scan;
pub mod watcher;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use fleetmq_codec::{Protocol, QoS};
use geo_engine::Network;
use serde::Serialize;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::client::{self, ConnectOptions};
use crate::connections::{ports_per_address, source_address};
use crate::cpu;
use crate::report::{self, Counters, Latency, Progress};
use ledger::Ledger;
use mix::{Target, WatchMix};

/// Most drivers or watchers in one run.
const MAX_CLIENTS: usize = 100_000;

/// The bundled route network, shared by every simulator for the whole run.
fn network() -> &'static Network {
    static NETWORK: OnceLock<Network> = OnceLock::new();
    NETWORK.get_or_init(Network::bundled)
}

/// The `drive` workload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Broker addresses, HOST:PORT[,HOST:PORT...] (loopback only); drivers and MQTT watchers go
    /// round-robin over them.
    #[arg(long)]
    pub mqtt: String,
    /// Drive over HTTP instead: the broker's `--http` base URL (`http://127.0.0.1:8080`); each
    /// driver posts to `/api/v1/vehicles/{id}/location` over its own keep-alive connection.
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
    /// Simulated vehicles, one MQTT connection each.
    #[arg(long, default_value_t = 100)]
    pub drivers: usize,
    /// Time between two fixes of one vehicle, ms.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Seconds of driving.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// WebSocket bridge URLs (`ws://127.0.0.1:8080/ws[,URL...]`); watchers use them round-robin
    /// unless `--watch-mqtt`.
    #[arg(long)]
    pub ws: Option<String>,
    /// Watchers; without `--ws` (or with `--watch-mqtt`) they are MQTT subscribers of
    /// `vehicles/#`.
    #[arg(long, default_value_t = 1)]
    pub watchers: usize,
    /// Watch over MQTT (`vehicles/#`) even when `--ws` is given.
    #[arg(long)]
    pub watch_mqtt: bool,
    /// `max_hz` asked of the WebSocket bridge.
    #[arg(long, default_value_t = 10.0)]
    pub max_hz: f64,
    /// WebSocket watchers ask `"batch":true`: one `updates` frame per `1/max_hz` with every
    /// changed vehicle (each state in it is one delivery).
    #[arg(long)]
    pub batch: bool,
    /// QoS of the location publishes (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Protocol of the drivers and MQTT watchers: 3.1.1 or 5.
    #[arg(long, default_value = "5", value_parser = client::parse_protocol)]
    pub protocol: Protocol,
    /// Connects in flight at once while setting up (below the broker's listen backlog).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// WebSocket watcher mix `riders=R,routes=T,fleet=F` (needs `--ws`; replaces `--watchers`):
    /// R follow one vehicle each, T one route each, F the whole fleet by bbox.
    #[arg(long, value_name = "MIX")]
    pub watch: Option<WatchMix>,
    /// Broker process ids (`PID[,PID...]`): report their CPU time per update.
    #[arg(long, value_name = "PID[,PID...]", value_parser = cpu::parse_pids)]
    pub pid: Option<Pids>,
    /// Seconds from the first fix that `latency_steady_us` leaves out: each vehicle's first
    /// fixes, which a broker may spend restoring or (in a cluster) leasing the vehicle.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub warmup: u64,
    /// Vehicle (and driver client id) prefix; default `b{pid}-`, unique per run. Set it so that
    /// watchers opened beforehand (`ws-connections --vehicle-prefix`) follow these vehicles.
    #[arg(long, value_name = "P")]
    pub vehicle_prefix: Option<String>,
    /// Write the figures as one JSON object to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Process ids given to `--pid`.
pub type Pids = Vec<u32>;

/// docs/bench.md `drive` figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Location updates published.
    pub updates_sent: u64,
    /// Processed states received by all watchers together.
    pub states_received: u64,
    /// `updates_sent` over the driving time.
    pub updates_per_sec: f64,
    /// Publish→receive latency, microseconds.
    pub latency_us: Latency,
    /// The same, of the states received from `warmup_s` seconds after the first fix on.
    pub latency_steady_us: Latency,
    /// `--warmup`.
    pub warmup_s: u64,
    /// Watched vehicles whose last fix never produced a state.
    pub lost: u64,
    /// The `--pid` processes' CPU time (user + system) over the run divided by `updates_sent`,
    /// microseconds; absent without `--pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_us_per_update: Option<f64>,
    /// The same over the steady window only, from `warmup_s` seconds after the first fix to the
    /// last one, divided by the updates sent in that window: what a vehicle that stays connected
    /// costs, without the first fixes (restore, lease) and the disconnects at the end. Absent
    /// without `--pid` or when the warm-up covers the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_us_per_update_steady: Option<f64>,
    /// With `--watch`: the latency of each watcher kind (`riders`, `routes`, `fleet`) alone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_by_kind_us: BTreeMap<&'static str, Latency>,
    /// The worst publish→receive latency (µs) of the states received in each second since the
    /// run started (connecting included; 0: none that second): where a high p99 comes from, a
    /// start-up storm or a stall.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_max_per_s_us: Vec<u64>,
}

/// Everything a run's tasks share.
pub struct Shared {
    /// Sends and receipts.
    pub ledger: Ledger,
    /// Sent (a) and received (b), for the progress line.
    pub counters: Arc<Counters>,
    /// The instant all send and receive times count from.
    pub epoch: Instant,
    /// Nanoseconds since `epoch` from which a delivery counts in `latency_steady_us`; set when
    /// driving starts (`u64::MAX` until then).
    pub steady_from_ns: AtomicU64,
    /// Vehicle id prefix of this run: `b{run}-`.
    pub prefix: String,
    /// Tells the watchers that the drivers have stopped (they then drain).
    stop: Mutex<StopSignals>,
}

/// The watchers' stop signals: one oneshot each, so a watcher waits for the end of the run
/// without a timer or a shared lock per message.
#[derive(Default)]
struct StopSignals {
    senders: Vec<oneshot::Sender<()>>,
    stopped: bool,
}

impl Shared {
    /// Driver index of vehicle `id`, if it belongs to this run.
    pub fn index(&self, id: &str) -> Option<usize> {
        id.strip_prefix(self.prefix.as_str())?.parse().ok()
    }

    /// Nanoseconds since the run's epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Resolves once the drivers have stopped (at once if they already have).
    pub fn stop_signal(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if stop.stopped {
            let _ = tx.send(());
        } else {
            stop.senders.push(tx);
        }
        rx
    }

    /// The drivers have stopped: every watcher starts draining.
    fn stopped(&self) {
        let senders = {
            let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            stop.stopped = true;
            std::mem::take(&mut stop.senders)
        };
        for tx in senders {
            let _ = tx.send(());
        }
    }
}

/// Runs the workload and prints the table; writes JSON when asked.
///
/// # Errors
/// Bad arguments, an unreachable broker or bridge, or every watcher failing.
pub async fn run(args: Args) -> Result<Figures> {
    let addrs = args
        .mqtt
        .split(',')
        .map(crate::target::loopback)
        .collect::<Result<Vec<SocketAddr>>>()?;
    let http = args
        .http
        .as_deref()
        .map(crate::target::loopback_http)
        .transpose()?;
    let ws: Option<Vec<String>> = match (&args.ws, args.watch_mqtt) {
        (Some(urls), false) => {
            let urls: Vec<String> = urls.split(',').map(str::to_string).collect();
            for url in &urls {
                crate::target::loopback_ws(url)?;
            }
            Some(urls)
        }
        _ => None,
    };
    if args.drivers == 0 || args.drivers > MAX_CLIENTS || args.watchers > MAX_CLIENTS {
        bail!("--drivers must be 1..={MAX_CLIENTS} and --watchers at most {MAX_CLIENTS}");
    }
    if args.interval_ms == 0 || args.duration == 0 {
        bail!("--interval-ms and --duration must be positive");
    }
    rlimit::increase_nofile_limit(u64::MAX)?;
    let routes: Vec<String> = network().route_ids().map(str::to_string).collect();
    if routes.is_empty() {
        bail!("the bundled network has no routes");
    }
    let epoch = Instant::now();
    let run = std::process::id() % 100_000;
    let shared = Arc::new(Shared {
        ledger: Ledger::new(args.drivers),
        counters: Arc::new(Counters::default()),
        epoch,
        steady_from_ns: AtomicU64::new(u64::MAX),
        prefix: args
            .vehicle_prefix
            .clone()
            .unwrap_or_else(|| format!("b{run}-")),
        stop: Mutex::default(),
    });

    // Watchers first, so the first fix already has someone listening.
    if args.watch.is_some() && ws.is_none() {
        bail!("--watch needs --ws (the mix is of WebSocket watchers)");
    }
    let watcher_count = args.watch.map_or(args.watchers, |m| m.total());
    if watcher_count > MAX_CLIENTS {
        bail!("at most {MAX_CLIENTS} watchers");
    }
    let mut watchers = JoinSet::new();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    match &ws {
        Some(urls) => {
            let targets = ws_targets(args.watch, args.watchers, args.drivers, &routes, &shared);
            let mut connecting = JoinSet::new();
            for (j, target) in targets.into_iter().enumerate() {
                let covered: Vec<usize> = match &target {
                    Target::Vehicle(v) => shared.index(v).into_iter().collect(),
                    Target::Route(r) => match routes.iter().position(|x| x == r) {
                        Some(k) => (0..args.drivers)
                            .filter(|i| i % routes.len() == k)
                            .collect(),
                        None => Vec::new(),
                    },
                    Target::Fleet => (0..args.drivers).collect(),
                };
                for i in covered {
                    shared.ledger.watch(i);
                }
                let url = urls[j % urls.len()].clone();
                let request = target.request(args.max_hz, args.batch);
                let kind = target.kind();
                let permit = permits.clone().acquire_owned().await?;
                connecting.spawn(async move {
                    let conn = watcher::connect_ws(&url, &request).await;
                    drop(permit);
                    conn.map(|ws| (kind, ws))
                });
            }
            while let Some(joined) = connecting.join_next().await {
                let (kind, ws) = joined??;
                let shared = shared.clone();
                watchers.spawn(async move { (kind, watcher::watch_ws(ws, shared).await) });
            }
        }
        None => {
            for j in 0..args.watchers {
                for i in 0..args.drivers {
                    shared.ledger.watch(i);
                }
                let opts = ConnectOptions::new(args.protocol, format!("b{run}-watch-{j}"));
                let (r, w) = watcher::connect_mqtt(addrs[j % addrs.len()], &opts).await?;
                let shared = shared.clone();
                watchers.spawn(async move { ("mqtt", watcher::watch_mqtt(r, w, shared).await) });
            }
        }
    }

    // Drivers connect, then start together, spread over one interval.
    let per_addr = ports_per_address();
    let spread = addrs[0].is_ipv4() && args.drivers + watcher_count > per_addr;
    let mut connecting = JoinSet::new();
    let mqtt_drivers = if http.is_some() { 0 } else { args.drivers };
    for i in 0..mqtt_drivers {
        let mut opts = ConnectOptions::new(args.protocol, format!("{}{i}", shared.prefix));
        opts.buffer = 1024;
        if spread {
            opts.bind = Some(source_address(i, per_addr)?);
        }
        let addr = addrs[i % addrs.len()];
        let permit = permits.clone().acquire_owned().await?;
        connecting.spawn(async move {
            let conn = client::connect(addr, &opts).await;
            drop(permit);
            conn.map(|(r, w, _)| (i, r, w))
        });
    }
    let mut conns = Vec::with_capacity(args.drivers);
    while let Some(joined) = connecting.join_next().await {
        conns.push(joined??);
    }
    let mut http_conns = Vec::new();
    if let Some(http) = http {
        // Instead of the MQTT connections above (none were opened).
        let mut connecting = JoinSet::new();
        for i in 0..args.drivers {
            let permit = permits.clone().acquire_owned().await?;
            connecting.spawn(async move {
                let conn = tokio::net::TcpStream::connect(http).await;
                drop(permit);
                conn.map(|s| (i, s))
            });
        }
        while let Some(joined) = connecting.join_next().await {
            let (i, stream) = joined??;
            stream.set_nodelay(true)?;
            http_conns.push((i, stream));
        }
    }
    let interval = Duration::from_millis(args.interval_ms);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(args.duration);
    // A warm-up past what an Instant holds: nothing is steady.
    let steady_from_ns = start
        .checked_add(Duration::from_secs(args.warmup))
        .map_or(u64::MAX, |t| {
            u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
        });
    shared
        .steady_from_ns
        .store(steady_from_ns, Ordering::Relaxed);
    let progress = Progress::start(shared.counters.clone(), "updates sent", "states received");
    let qos = QoS::from_u8(args.qos).unwrap_or(QoS::AtMostOnce);
    let pids = args.pid.clone().unwrap_or_default();
    let cpu_before = cpu::total_cpu_us(&pids)?;
    let steady_cpu = (!pids.is_empty()).then(|| {
        let window = start
            .checked_add(Duration::from_secs(args.warmup))
            .filter(|from| *from < end)
            .map(|from| (from, end));
        tokio::spawn(steady_cpu(pids.clone(), window, shared.counters.clone()))
    });
    let mut drivers = JoinSet::new();
    let n = args.drivers as u32;
    let job = |i: usize| driver::Job {
        index: i,
        route: routes[i % routes.len()].clone(),
        start: start + interval * (i as u32 % n) / n,
        interval,
        end,
        qos,
    };
    match http {
        Some(host) => {
            for (i, stream) in http_conns {
                let run = http_driver::drive(stream, host, job(i), network(), shared.clone());
                drivers.spawn(run);
            }
        }
        None => {
            // A lane holds the drivers whose spread start falls in one `LANE_SLOT`, and ticks at
            // the first of them.
            let lanes =
                (interval.as_nanos() / driver::LANE_SLOT.as_nanos()).clamp(1, n as u128) as usize;
            let mut by_lane: Vec<Vec<driver::Driver>> = (0..lanes).map(|_| Vec::new()).collect();
            for (i, r, w) in conns {
                let d = driver::Driver::new(r, w, job(i), network(), &shared)?;
                by_lane[i * lanes / args.drivers].push(d);
            }
            for lane in by_lane {
                let Some(lane_start) = lane.iter().map(driver::Driver::start).min() else {
                    continue;
                };
                let shared = shared.clone();
                drivers
                    .spawn(async move { Ok(driver::drive_lane(lane, lane_start, shared).await) });
            }
        }
    }
    let mut updates_sent = 0;
    while let Some(joined) = drivers.join_next().await {
        match joined {
            Ok(Ok(sent)) => updates_sent += sent,
            Ok(Err(e)) => eprintln!("driver failed: {e:#}"),
            Err(e) => eprintln!("driver task failed: {e}"),
        }
    }
    let drive_secs = start.elapsed().as_secs_f64().max(1e-9);
    shared.stopped();
    let mut states_received = 0;
    let mut repeats = 0;
    let mut histogram = report::histogram();
    let mut steady = report::histogram();
    let mut by_kind = BTreeMap::new();
    let mut worst_per_s = Vec::new();
    while let Some(joined) = watchers.join_next().await {
        match joined {
            Ok((kind, Ok(tally))) => {
                states_received += tally.count;
                repeats += tally.repeats;
                histogram.add(&tally.histogram).ok();
                steady.add(&tally.steady).ok();
                watcher::merge_worst(&mut worst_per_s, &tally.worst_per_s);
                by_kind
                    .entry(kind)
                    .or_insert_with(report::histogram)
                    .add(&tally.histogram)
                    .ok();
            }
            Ok((kind, Err(e))) => eprintln!("{kind} watcher failed: {e:#}"),
            Err(e) => eprintln!("watcher task failed: {e}"),
        }
    }
    drop(progress);
    let cpu_used = cpu::total_cpu_us(&pids)?.saturating_sub(cpu_before);
    let steady_us_per_update = match steady_cpu {
        Some(task) => task.await??,
        None => None,
    };
    let figures = Figures {
        updates_sent,
        states_received,
        updates_per_sec: updates_sent as f64 / drive_secs,
        latency_us: Latency::of(&histogram),
        latency_steady_us: Latency::of(&steady),
        warmup_s: args.warmup,
        lost: shared.ledger.lost(),
        broker_cpu_us_per_update: (!pids.is_empty())
            .then(|| cpu_used as f64 / updates_sent.max(1) as f64),
        broker_cpu_us_per_update_steady: steady_us_per_update,
        latency_by_kind_us: match args.watch {
            Some(_) => by_kind.iter().map(|(k, h)| (*k, Latency::of(h))).collect(),
            None => BTreeMap::new(),
        },
        latency_max_per_s_us: worst_per_s,
    };
    let mut rows = vec![
        ("broker".to_string(), args.mqtt.clone()),
        (
            "drivers post over".to_string(),
            args.http.clone().unwrap_or_else(|| "MQTT".into()),
        ),
        (
            "drivers".to_string(),
            format!("{} every {} ms", args.drivers, args.interval_ms),
        ),
        (
            "watchers".to_string(),
            match (args.watch, &ws) {
                (Some(m), _) => format!(
                    "{} WebSocket{}: {} riders, {} routes, {} fleet",
                    m.total(),
                    if args.batch { " (batch)" } else { "" },
                    m.riders,
                    m.routes,
                    m.fleet
                ),
                (None, Some(_)) => format!(
                    "{} WebSocket{}",
                    args.watchers,
                    if args.batch { " (batch)" } else { "" }
                ),
                (None, None) => format!("{} MQTT", args.watchers),
            },
        ),
        (
            "watched vehicles".to_string(),
            shared.ledger.watched().to_string(),
        ),
        ("updates sent".to_string(), figures.updates_sent.to_string()),
        (
            "updates/s".to_string(),
            format!("{:.0}", figures.updates_per_sec),
        ),
        (
            "states received".to_string(),
            figures.states_received.to_string(),
        ),
        ("  of which repeats".to_string(), repeats.to_string()),
        ("lost".to_string(), figures.lost.to_string()),
    ];
    rows.extend(figures.latency_us.rows());
    let l = &figures.latency_steady_us;
    rows.push((
        format!("  from s {} of driving: p50 / p99 / max", args.warmup),
        format!(
            "{:.3} / {:.3} / {:.3} ms",
            l.p50 as f64 / 1000.0,
            l.p99 as f64 / 1000.0,
            l.max as f64 / 1000.0
        ),
    ));
    for (kind, l) in &figures.latency_by_kind_us {
        rows.push((
            format!("  {kind} p50 / p99 / max"),
            format!(
                "{:.3} / {:.3} / {:.3} ms",
                l.p50 as f64 / 1000.0,
                l.p99 as f64 / 1000.0,
                l.max as f64 / 1000.0
            ),
        ));
    }
    if let Some(worst) = watcher::worst_seconds(&figures.latency_max_per_s_us, 3) {
        rows.push(("  worst seconds (s: max)".to_string(), worst));
    }
    if let Some(us) = figures.broker_cpu_us_per_update {
        rows.push((
            "broker CPU".to_string(),
            format!("{:.1} s over {} pid(s)", cpu_used as f64 / 1e6, pids.len()),
        ));
        rows.push(("broker CPU µs/update".to_string(), format!("{us:.2}")));
    }
    if let Some(us) = figures.broker_cpu_us_per_update_steady {
        rows.push((
            format!("  from s {} of driving", args.warmup),
            format!("{us:.2}"),
        ));
    }
    report::print_table("drive", &rows);
    report::write_json(args.json.as_deref(), &figures)?;
    Ok(figures)
}

/// Broker CPU µs per update sent between the two instants of `window` (`None`: no window, or no
/// update in it), read from `/proc/PID/stat` of `pids` and the drivers' sent counter.
async fn steady_cpu(
    pids: Vec<u32>,
    window: Option<(Instant, Instant)>,
    counters: Arc<Counters>,
) -> Result<Option<f64>> {
    let Some((from, to)) = window else {
        return Ok(None);
    };
    tokio::time::sleep_until(from.into()).await;
    let (cpu0, sent0) = (
        cpu::total_cpu_us(&pids)?,
        counters.a.load(Ordering::Relaxed),
    );
    tokio::time::sleep_until(to.into()).await;
    let (cpu1, sent1) = (
        cpu::total_cpu_us(&pids)?,
        counters.a.load(Ordering::Relaxed),
    );
    let sent = sent1.saturating_sub(sent0);
    Ok((sent > 0).then(|| cpu1.saturating_sub(cpu0) as f64 / sent as f64))
}

/// What each WebSocket watcher subscribes to: the `--watch` mix, or `--watchers` route watchers.
fn ws_targets(
    mix: Option<WatchMix>,
    watchers: usize,
    drivers: usize,
    routes: &[String],
    shared: &Shared,
) -> Vec<Target> {
    let route = |j: usize| Target::Route(routes[j % routes.len()].clone());
    let Some(m) = mix else {
        return (0..watchers).map(route).collect();
    };
    let riders =
        (0..m.riders).map(|j| Target::Vehicle(format!("{}{}", shared.prefix, j % drivers)));
    riders
        .chain((0..m.routes).map(route))
        .chain((0..m.fleet).map(|_| Target::Fleet))
        .collect()
}
