//! `throughput`: raw pub/sub messages per second and publish→receive latency.
//!
//! Subscribers subscribe first to `fleetmq-bench/{run}/+` (every publisher's topic; `--filter`
//! for another filter, e.g. `#` to measure a broker's per-message ACL check), then
//! publishers publish to `fleetmq-bench/{run}/{i}` as fast as flow control allows: QoS 0 is bounded
//! only by TCP (batched writes of about 16 KiB), QoS 1/2 by a window of in-flight messages (the
//! smaller of `--inflight` and the broker's Receive Maximum). The first 8 bytes of every payload
//! are the send time in nanoseconds since the process's start instant, which both sides share, so
//! latency needs no clock synchronisation. After `--duration` the publishers stop and subscribers
//! drain until one second passes without a message (at most 10 s). With `--rate`, publishers
//! pace themselves to that total rate instead of flooding.
//!
//! `--mqtt A,B,C` spreads the clients over the nodes of a cluster: publishers on the first,
//! subscribers in turn over the others (cross-node fan-out). `--session-expiry` makes the
//! subscribers' sessions outlive their connections (durable sessions on a fleetmq cluster).
//! At QoS 1/2 the publishers also time each publish until its PUBACK/PUBCOMP (`ack_us`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use fleetmq_codec::{ByteString, Packet, Protocol, QoS};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{self, AckKind, ConnectOptions, Reader, Writer};
use crate::report::{self, Counters, Latency, Progress};

/// Bytes queued before a publisher flushes; large enough to amortise the syscall.
const WRITE_BATCH: usize = 16 * 1024;
/// Quiet time after which a subscriber considers the broker drained.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// Longest drain after the publishers stop.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// The `throughput` workload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Broker address, HOST:PORT (loopback only); a comma-separated list spreads the clients
    /// over a cluster's nodes: publishers on the first, subscribers over the others in turn.
    #[arg(long)]
    pub mqtt: String,
    /// The subscribers ask for this v5 Session Expiry Interval, seconds (their sessions
    /// outlive the connection: durable sessions on a fleetmq cluster).
    #[arg(long)]
    pub session_expiry: Option<u32>,
    /// Publishing clients.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing clients; each subscribes to every publisher's topic.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Payload size in bytes (at least 8: the send timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Messages in flight per publisher at QoS 1/2 (capped by the broker's Receive Maximum).
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// Total messages per second over all publishers; 0 (default): as fast as flow control
    /// allows. A fixed rate measures latency at a load the broker can sustain, instead of the
    /// queueing delay of a flood.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// The subscribers' filter; default `fleetmq-bench/{run}/+`, every publisher's topic. It
    /// should match those topics (`#` does), or nothing is received.
    #[arg(long)]
    pub filter: Option<String>,
    /// Protocol: 3.1.1 or 5.
    #[arg(long, default_value = "5", value_parser = client::parse_protocol)]
    pub protocol: Protocol,
    /// Write the figures as one JSON object to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution as CSV (`percentile,latency_us`) to FILE, for plotting.
    #[arg(long)]
    pub percentiles: Option<PathBuf>,
}

/// docs/bench.md `throughput` figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Messages published.
    pub sent: u64,
    /// Messages delivered to subscribers (each delivery counts).
    pub received: u64,
    /// `sent` over the publishing time.
    pub sent_per_sec: f64,
    /// `received` over the time from the first publish to the last delivery.
    pub received_per_sec: f64,
    /// Publish→receive latency, microseconds.
    pub latency_us: Latency,
    /// QoS 1/2: publish → PUBACK/PUBCOMP, microseconds.
    pub ack_us: Option<Latency>,
}

/// What one publisher did.
struct PubResult {
    acks: Histogram<u64>,
    sent: u64,
}

/// What one subscriber saw.
struct SubResult {
    received: u64,
    /// Time of the last delivery, nanoseconds since the start instant.
    last_ns: u64,
    histogram: Histogram<u64>,
}

/// Runs the workload and prints the table; writes JSON when asked.
///
/// # Errors
/// Bad arguments, an unreachable broker, or every client failing.
pub async fn run(args: Args) -> Result<Figures> {
    let addrs = args
        .mqtt
        .split(',')
        .map(|a| crate::target::loopback(a.trim()))
        .collect::<Result<Vec<_>>>()?;
    let pub_addr = addrs[0];
    let sub_addrs = if addrs.len() > 1 {
        &addrs[1..]
    } else {
        &addrs[..]
    };
    if args.size < 8 {
        bail!("--size must be at least 8 bytes (the send timestamp)");
    }
    if args.publishers == 0 || args.duration == 0 {
        bail!("--publishers and --duration must be positive");
    }
    let qos = QoS::from_u8(args.qos).unwrap_or(QoS::AtMostOnce);
    let epoch = Instant::now();
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        epoch.elapsed().as_nanos() % 1_000_000
    );
    let prefix = format!("fleetmq-bench/{run_id}");
    let counters = Arc::new(Counters::default());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Subscribers first, all subscribed before anyone publishes.
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let mut opts = ConnectOptions::new(args.protocol, format!("bench-sub-{run_id}-{i}"));
        opts.session_expiry = args.session_expiry;
        let (mut r, mut w, _) = client::connect(sub_addrs[i % sub_addrs.len()], &opts).await?;
        let filter = args.filter.clone().unwrap_or_else(|| format!("{prefix}/+"));
        client::subscribe(&mut r, &mut w, &[filter], qos).await?;
        subs.push((r, w));
    }
    let mut sub_tasks = JoinSet::new();
    for (r, w) in subs {
        let ctx = SubCtx {
            epoch,
            counters: counters.clone(),
            done: done.clone(),
        };
        sub_tasks.spawn(subscriber(r, w, ctx));
    }

    let mut pubs = Vec::new();
    for i in 0..args.publishers {
        let opts = ConnectOptions::new(args.protocol, format!("bench-pub-{run_id}-{i}"));
        let (r, w, session) = client::connect(pub_addr, &opts).await?;
        let window = args.inflight.min(session.receive_maximum).max(1);
        pubs.push((r, w, window, ByteString::from(format!("{prefix}/{i}"))));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let progress = Progress::start(counters.clone(), "sent", "received");
    let mut pub_tasks = JoinSet::new();
    for (r, w, window, topic) in pubs {
        let job = PubJob {
            topic,
            rate: (args.rate > 0).then(|| args.rate as f64 / args.publishers as f64),
            start,
            qos,
            size: args.size,
            window,
            epoch,
            end,
            counters: counters.clone(),
        };
        pub_tasks.spawn(publisher(r, w, job));
    }

    let mut sent = 0;
    let mut acks = report::histogram();
    while let Some(joined) = pub_tasks.join_next().await {
        match joined {
            Ok(Ok(p)) => {
                sent += p.sent;
                acks.add(&p.acks).ok();
            }
            Ok(Err(e)) => eprintln!("publisher failed: {e:#}"),
            Err(e) => eprintln!("publisher task failed: {e}"),
        }
    }
    let publish_secs = start
        .elapsed()
        .as_secs_f64()
        .min(args.duration as f64 + 5.0);
    done.store(true, Ordering::Relaxed);
    let mut received = 0;
    let mut last_ns = 0;
    let mut histogram = report::histogram();
    while let Some(joined) = sub_tasks.join_next().await {
        match joined {
            Ok(Ok(s)) => {
                received += s.received;
                last_ns = last_ns.max(s.last_ns);
                histogram.add(&s.histogram).ok();
            }
            Ok(Err(e)) => eprintln!("subscriber failed: {e:#}"),
            Err(e) => eprintln!("subscriber task failed: {e}"),
        }
    }
    drop(progress);
    let start_ns = start.duration_since(epoch).as_nanos() as u64;
    let receive_secs = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(publish_secs.min(1.0));
    let figures = Figures {
        sent,
        received,
        sent_per_sec: sent as f64 / publish_secs.max(1e-9),
        received_per_sec: if received == 0 {
            0.0
        } else {
            received as f64 / receive_secs
        },
        latency_us: Latency::of(&histogram),
        ack_us: (qos != QoS::AtMostOnce).then(|| Latency::of(&acks)),
    };
    print(&args, &figures);
    report::write_json(args.json.as_deref(), &figures)?;
    report::write_percentiles(args.percentiles.as_deref(), &histogram)?;
    Ok(figures)
}

fn print(args: &Args, f: &Figures) {
    let expected = f.sent * args.subscribers as u64;
    let mut rows = vec![
        ("broker".to_string(), args.mqtt.clone()),
        (
            "clients".to_string(),
            format!("{} pub -> {} sub", args.publishers, args.subscribers),
        ),
        (
            "payload / qos".to_string(),
            format!("{} B / QoS {}", args.size, args.qos),
        ),
        ("sent".to_string(), f.sent.to_string()),
        ("received".to_string(), f.received.to_string()),
        (
            "delivered".to_string(),
            format!(
                "{:.2} %",
                100.0 * f.received as f64 / expected.max(1) as f64
            ),
        ),
        ("sent/s".to_string(), format!("{:.0}", f.sent_per_sec)),
        (
            "received/s".to_string(),
            format!("{:.0}", f.received_per_sec),
        ),
    ];
    rows.extend(f.latency_us.rows());
    if let Some(acks) = &f.ack_us {
        rows.extend(
            acks.rows()
                .into_iter()
                .map(|(k, v)| (format!("ack {k}"), v)),
        );
    }
    report::print_table("throughput", &rows);
}

struct PubJob {
    topic: ByteString,
    /// Messages per second for this publisher; `None`: as fast as flow control allows.
    rate: Option<f64>,
    start: Instant,
    qos: QoS,
    size: usize,
    window: u16,
    epoch: Instant,
    end: Instant,
    counters: Arc<Counters>,
}

/// What the read half of a QoS 1/2 publisher tells the write half.
enum AckEvent {
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) for this packet id: a window slot is free.
    Done(u16),
    /// PUBREC: answer with PUBREL.
    Received(u16),
}

async fn publisher(reader: Reader, mut w: Writer, job: PubJob) -> Result<PubResult> {
    let (tx, mut rx) = mpsc::channel(usize::from(job.window) * 2 + 16);
    let read_task = tokio::spawn(read_acks(reader, tx));
    let template = Bytes::from(vec![b'x'; job.size]);
    let mut sent = 0u64;
    let mut inflight = 0u16;
    let mut pkid = 0u16;
    let mut clock = AckClock {
        sent_ns: vec![0; usize::from(u16::MAX) + 1],
        epoch: job.epoch,
        histogram: report::histogram(),
    };
    let grace_end = job.end + DRAIN_MAX;
    loop {
        while let Ok(ev) = rx.try_recv() {
            on_ack(&mut w, ev, &mut inflight, &mut clock)?;
        }
        let now = Instant::now();
        if now >= job.end && (inflight == 0 || now >= grace_end) {
            break;
        }
        let mut batch = 0u64;
        // With --rate, only the messages due by now may go out.
        let budget = match job.rate {
            Some(r) => {
                ((now.duration_since(job.start).as_secs_f64() * r) as u64).saturating_sub(sent)
            }
            None => u64::MAX,
        };
        if now < job.end {
            while batch < budget
                && w.pending() < WRITE_BATCH
                && (job.qos == QoS::AtMostOnce || inflight < job.window)
            {
                pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
                w.queue(&client::publish(
                    &job.topic,
                    job.qos,
                    pkid,
                    template.clone(),
                ))?;
                // The payload is the tail of the encoded packet: stamp its first 8 bytes in place.
                let ns = job.epoch.elapsed().as_nanos() as u64;
                w.stamp_tail(job.size, &ns.to_le_bytes());
                clock.sent_ns[usize::from(pkid)] = ns;
                batch += 1;
                if job.qos != QoS::AtMostOnce {
                    inflight += 1;
                }
            }
        }
        if batch > 0 {
            sent += batch;
            job.counters.a.fetch_add(batch, Ordering::Relaxed);
        }
        if w.pending() > 0 {
            w.flush().await?;
        } else {
            let mut until = if now < job.end { job.end } else { grace_end };
            if let Some(r) = job.rate.filter(|_| now < job.end) {
                let next_due = job.start + Duration::from_secs_f64((sent + 1) as f64 / r);
                until = until.min(next_due);
            }
            match tokio::time::timeout_at(until.into(), rx.recv()).await {
                Ok(Some(ev)) => on_ack(&mut w, ev, &mut inflight, &mut clock)?,
                Ok(None) => bail!("broker closed the publisher's connection"),
                Err(_) => {}
            }
        }
    }
    w.flush().await?;
    read_task.abort();
    Ok(PubResult {
        sent,
        acks: clock.histogram,
    })
}

/// Send times of the publishes in flight, by packet id, and the publish → ack histogram.
struct AckClock {
    sent_ns: Vec<u64>,
    epoch: Instant,
    histogram: Histogram<u64>,
}

impl AckClock {
    fn done(&mut self, pkid: u16) {
        let ns = self.epoch.elapsed().as_nanos() as u64;
        let sent = self.sent_ns[usize::from(pkid)];
        report::record(&mut self.histogram, ns.saturating_sub(sent) / 1000);
    }
}

fn on_ack(w: &mut Writer, ev: AckEvent, inflight: &mut u16, clock: &mut AckClock) -> Result<()> {
    match ev {
        AckEvent::Done(pkid) => {
            *inflight = inflight.saturating_sub(1);
            clock.done(pkid);
        }
        AckEvent::Received(pkid) => w.ack(AckKind::Rel, pkid)?,
    }
    Ok(())
}

async fn read_acks(mut r: Reader, tx: mpsc::Sender<AckEvent>) -> Result<()> {
    while let Some(packet) = r.next().await? {
        let ev = match packet {
            Packet::PubAck(p) | Packet::PubComp(p) => AckEvent::Done(p.pkid),
            Packet::PubRec(p) => AckEvent::Received(p.pkid),
            Packet::Disconnect(d) => bail!("broker sent DISCONNECT {:#04x}", d.reason),
            _ => continue,
        };
        if tx.send(ev).await.is_err() {
            break;
        }
    }
    Ok(())
}

struct SubCtx {
    epoch: Instant,
    counters: Arc<Counters>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

async fn subscriber(mut r: Reader, mut w: Writer, ctx: SubCtx) -> Result<SubResult> {
    let mut histogram = report::histogram();
    let mut received = 0u64;
    let mut last_ns = 0u64;
    let mut last_seen = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        match tokio::time::timeout(Duration::from_millis(100), r.fill()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => break,
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
        let now_ns = ctx.epoch.elapsed().as_nanos() as u64;
        let mut batch = 0u64;
        while let Some(packet) = r.try_next()? {
            match packet {
                Packet::Publish(p) => {
                    if let Some(stamp) = p.payload.get(..8) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(stamp);
                        let sent_ns = u64::from_le_bytes(b);
                        report::record(&mut histogram, now_ns.saturating_sub(sent_ns) / 1000);
                    }
                    batch += 1;
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => w.ack(AckKind::Ack, p.pkid)?,
                        QoS::ExactlyOnce => w.ack(AckKind::Rec, p.pkid)?,
                    }
                }
                Packet::PubRel(p) => w.ack(AckKind::Comp, p.pkid)?,
                Packet::Disconnect(d) => bail!("broker sent DISCONNECT {:#04x}", d.reason),
                _ => {}
            }
        }
        w.flush().await?;
        let now = Instant::now();
        if batch > 0 {
            received += batch;
            last_ns = now_ns;
            last_seen = now;
            ctx.counters.b.fetch_add(batch, Ordering::Relaxed);
        }
        if ctx.done.load(Ordering::Relaxed) {
            let since = *done_at.get_or_insert(now);
            if now.duration_since(last_seen) >= DRAIN_QUIET
                || now.duration_since(since) >= DRAIN_MAX
            {
                break;
            }
        }
    }
    Ok(SubResult {
        received,
        last_ns,
        histogram,
    })
}
