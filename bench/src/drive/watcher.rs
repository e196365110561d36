//! Watchers: WebSocket clients of the bridge's `/ws` subscribed to a vehicle, route or bbox, or MQTT
//! subscribers of `vehicles/#`. A WebSocket watcher reads both `update` frames (one state) and
//! batched `updates` frames (`"batch":true`, every changed vehicle of one tick); each state of a
//! batch is one delivery, timed on the frame's arrival. Each records the latency of the first delivery of every fix of
//! this run's vehicles (a state whose `ts` is not newer than the last one this watcher saw for
//! that vehicle is a repeat: counted, not timed) and drains after the drivers stop until 2 s
//! pass quietly (at most 10 s).
//!
//! Per message a watcher does what it must and no more: the states of `update`/`updates` frames
//! and MQTT payloads are read with [`scan`] (only `vehicle` and `ts`; other frames get a whole
//! parse), one clock read and one shared counter add per frame, and no timer per message (the
//! end of the run arrives as one oneshot per watcher).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetmq_codec::{Packet, QoS};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{self, ConnectOptions, Reader, Writer};
use crate::report;

use super::Shared;
use super::scan::{self, Frame};

/// Quiet time after the drivers stop that ends a watcher.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// Longest drain after the drivers stop.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Read buffer of a WebSocket watcher: large enough for a batched frame to arrive in few reads.
const READ_BUFFER: usize = 16 * 1024;

/// A WebSocket connection to the bridge.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The parts of a processed state the bench reads (frames [`scan`] leaves to a whole parse).
#[derive(Deserialize)]
struct StateRef<'a> {
    #[serde(borrow)]
    vehicle: Cow<'a, str>,
    ts: i64,
}

/// The parts of a bridge message the bench reads.
#[derive(Deserialize)]
struct WsMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    vehicle: Option<StateRef<'a>>,
    /// The states of a batched `updates` frame (and of a snapshot, which is not a delivery).
    #[serde(borrow, default)]
    vehicles: Vec<StateRef<'a>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

/// Opens `/ws` and sends the subscribe request `sub`.
///
/// # Errors
/// Handshake failure or a closed connection.
pub async fn connect_ws(url: &str, sub: &serde_json::Value) -> Result<Ws> {
    // tungstenite zero-fills the free part of its read buffer (128 KiB by default) before every
    // read: with ~1 KiB per read that memset was 9 % of the bench's CPU.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _) = tokio::time::timeout(
        client::HANDSHAKE_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, Some(config), false),
    )
    .await
    .context("WebSocket handshake timed out")?
    .with_context(|| format!("connect {url}"))?;
    ws.send(Message::Text(sub.to_string().into())).await?;
    Ok(ws)
}

/// Counts and times the states arriving on `ws` until the run is over.
///
/// # Errors
/// The bridge closes the connection or sends an error.
pub async fn watch_ws(mut ws: Ws, shared: Arc<Shared>) -> Result<Tally> {
    let mut watch = Watch::new();
    let last_seen = AtomicU64::new(shared.now_ns());
    let stop = until_drained(shared.stop_signal(), &last_seen, shared.epoch);
    tokio::pin!(stop);
    loop {
        // No timer per message: the stop future lives across iterations and is woken once, when
        // the drivers stop, then by its own drain timer.
        tokio::select! {
            () = &mut stop => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let now_ns = shared.now_ns();
                    let ours = watch.frame(&shared, text.as_str(), now_ns)?;
                    seen(&shared, &last_seen, ours, now_ns);
                }
                Some(Ok(Message::Close(frame))) => bail!("bridge closed the WebSocket: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("bridge closed the WebSocket"),
            },
        }
    }
    ws.close(None).await.ok();
    Ok(watch.tally())
}

/// Connects an MQTT watcher and subscribes it to `vehicles/#`.
///
/// # Errors
/// Connection or subscription failure.
pub async fn connect_mqtt(addr: SocketAddr, opts: &ConnectOptions) -> Result<(Reader, Writer)> {
    let (mut r, mut w, _) = client::connect(addr, opts).await?;
    client::subscribe(&mut r, &mut w, &["vehicles/#".to_string()], QoS::AtMostOnce).await?;
    Ok((r, w))
}

/// Counts and times the `vehicles/{id}` states arriving until the run is over.
///
/// # Errors
/// The broker closes the connection or sends a malformed packet.
pub async fn watch_mqtt(mut r: Reader, _w: Writer, shared: Arc<Shared>) -> Result<Tally> {
    let mut watch = Watch::new();
    let last_seen = AtomicU64::new(shared.now_ns());
    let stop = until_drained(shared.stop_signal(), &last_seen, shared.epoch);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            filled = r.fill() => match filled {
                Ok(true) => {}
                Ok(false) => bail!("broker closed the watcher"),
                Err(e) => return Err(e),
            },
        }
        let now_ns = shared.now_ns();
        let mut ours = 0;
        while let Some(packet) = r.try_next()? {
            if let Packet::Publish(p) = packet {
                if p.retain {
                    // Retained states are the last run's or an earlier fix's, not a delivery.
                    continue;
                }
                scan::states(&p.payload, |vehicle, ts| {
                    ours += watch.state(&shared, vehicle, ts, now_ns);
                });
            }
        }
        seen(&shared, &last_seen, ours, now_ns);
    }
    Ok(watch.tally())
}

/// Returns once the drivers have stopped (`done` fires or its sender is gone) and then either
/// [`DRAIN_QUIET`] has passed since `last_seen` (ns after `epoch`) or [`DRAIN_MAX`] since the stop.
async fn until_drained(done: oneshot::Receiver<()>, last_seen: &AtomicU64, epoch: Instant) {
    let _ = done.await;
    let stopped = Instant::now();
    loop {
        let seen = epoch + Duration::from_nanos(last_seen.load(Ordering::Relaxed));
        let due = (seen + DRAIN_QUIET).min(stopped + DRAIN_MAX);
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

/// What a watcher returns.
pub struct Tally {
    /// States received.
    pub count: u64,
    /// Repeats among them.
    pub repeats: u64,
    /// Latency of first deliveries, microseconds.
    pub histogram: Histogram<u64>,
    /// Of those, the ones received from [`Shared::steady_from_ns`] on.
    pub steady: Histogram<u64>,
    /// The worst latency (µs) of the first deliveries received in each second of the run,
    /// counted from the run's start (0 where none arrived).
    pub worst_per_s: Vec<u64>,
}

/// Seconds of a run [`Tally::worst_per_s`] covers; deliveries later than that are in the
/// histogram only.
const MAX_RUN_SECS: usize = 86_400;

/// The `n` seconds of `worst_per_s` with the highest latency, as `"12: 3.4 ms, ..."` (worst
/// first); `None` when nothing was received.
pub fn worst_seconds(worst_per_s: &[u64], n: usize) -> Option<String> {
    let mut seconds: Vec<(usize, u64)> = worst_per_s
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, us)| us > 0)
        .collect();
    seconds.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = seconds
        .iter()
        .take(n)
        .map(|(s, us)| format!("{s}: {:.1} ms", *us as f64 / 1000.0))
        .collect();
    (!shown.is_empty()).then(|| shown.join(", "))
}

/// Merges `from` into `into`, second by second (the maximum of each).
pub fn merge_worst(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = (*a).max(*b);
    }
}

/// One watcher's tally.
struct Watch {
    count: u64,
    /// States whose `ts` was not newer than the vehicle's last one seen here.
    repeats: u64,
    /// Newest `ts` seen per vehicle index (`i64::MIN`: none yet); a vector, not a hash map:
    /// one MQTT watcher looks up every state of the run here.
    newest: Vec<i64>,
    histogram: Histogram<u64>,
    steady: Histogram<u64>,
    worst_per_s: Vec<u64>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            count: 0,
            repeats: 0,
            newest: Vec::new(),
            histogram: report::histogram(),
            steady: report::histogram(),
            worst_per_s: Vec::new(),
        }
    }

    fn tally(self) -> Tally {
        Tally {
            count: self.count,
            repeats: self.repeats,
            histogram: self.histogram,
            steady: self.steady,
            worst_per_s: self.worst_per_s,
        }
    }

    /// Records one first delivery's latency `us`, received at `now_ns`; from `steady_from_ns`
    /// on, in the steady histogram too.
    fn record(&mut self, us: u64, now_ns: u64, steady_from_ns: u64) {
        report::record(&mut self.histogram, us);
        if now_ns >= steady_from_ns {
            report::record(&mut self.steady, us);
        }
        let second = usize::try_from(now_ns / 1_000_000_000).unwrap_or(usize::MAX);
        if second < MAX_RUN_SECS {
            if self.worst_per_s.len() <= second {
                self.worst_per_s.resize(second + 1, 0);
            }
            self.worst_per_s[second] = self.worst_per_s[second].max(us);
        }
    }

    /// Counts and times the states of one bridge text frame received at `now_ns`; returns how
    /// many were of this run's vehicles.
    ///
    /// # Errors
    /// An `error` frame, or a frame that is not JSON.
    fn frame(&mut self, shared: &Shared, text: &str, now_ns: u64) -> Result<u64> {
        let mut ours = 0;
        match scan::frame(text.as_bytes()) {
            Frame::States => scan::states(text.as_bytes(), |vehicle, ts| {
                ours += self.state(shared, vehicle, ts, now_ns);
            }),
            Frame::Other => {}
            Frame::Parse => {
                // An error, or a frame laid out otherwise than the scanner expects.
                let msg: WsMessage = match serde_json::from_str(text) {
                    Ok(m) => m,
                    Err(e) => bail!("unreadable bridge message ({e}): {text}"),
                };
                match (msg.kind.as_ref(), msg.vehicle) {
                    ("update", Some(s)) => ours += self.state(shared, &s.vehicle, s.ts, now_ns),
                    ("updates", _) => {
                        for s in &msg.vehicles {
                            ours += self.state(shared, &s.vehicle, s.ts, now_ns);
                        }
                    }
                    ("error", _) => bail!(
                        "bridge error: {}",
                        msg.message.unwrap_or(Cow::Borrowed("(no message)"))
                    ),
                    _ => {}
                }
            }
        }
        Ok(ours)
    }

    /// Counts one state received at `now_ns`, times it if it is the first of its fix here;
    /// 1 if the vehicle is this run's, else 0.
    fn state(&mut self, shared: &Shared, vehicle: &str, ts: i64, now_ns: u64) -> u64 {
        let Some(i) = shared.index(vehicle) else {
            return 0;
        };
        if i >= self.newest.len() {
            self.newest.resize(i + 1, i64::MIN);
        }
        let Some(newest) = self.newest.get_mut(i) else {
            return 0;
        };
        if ts > *newest {
            *newest = ts;
            if let Some(ns) = shared.ledger.received(i, ts, now_ns) {
                let steady_from = shared.steady_from_ns.load(Ordering::Relaxed);
                self.record(ns / 1000, now_ns, steady_from);
            }
        } else {
            self.repeats += 1;
        }
        self.count += 1;
        1
    }
}

/// `ours` states of this run arrived at `now_ns`: the drain's quiet time restarts, and the
/// progress line counts them (one shared atomic add per frame, not per state).
fn seen(shared: &Shared, last_seen: &AtomicU64, ours: u64, now_ns: u64) {
    if ours > 0 {
        last_seen.store(now_ns, Ordering::Relaxed);
        shared.counters.b.fetch_add(ours, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_latency_of_each_second_is_kept_and_merged() {
        let mut a = Watch::new();
        // Steady from 1.9 s on.
        let steady = 1_900_000_000;
        a.record(900, 200_000_000, steady);
        a.record(4_000, 1_500_000_000, steady);
        a.record(3_000, 1_900_000_000, steady);
        a.record(7_000, 3_000_000_000, steady);
        assert_eq!(a.worst_per_s, [900, 4_000, 0, 7_000]);
        assert_eq!(a.histogram.len(), 4);
        assert_eq!(a.steady.len(), 2, "the deliveries from 1.9 s on");
        assert!(a.steady.equivalent(a.steady.min(), 3_000));
        assert!(a.steady.equivalent(a.steady.max(), 7_000));
        // Past the covered run length: in the histograms only.
        a.record(1, (MAX_RUN_SECS as u64) * 1_000_000_000, steady);
        assert_eq!((a.worst_per_s.len(), a.histogram.len()), (4, 5));
        let mut merged = vec![1_000, 1_000];
        merge_worst(&mut merged, &a.tally().worst_per_s);
        assert_eq!(merged, [1_000, 4_000, 0, 7_000]);
        assert_eq!(
            worst_seconds(&merged, 2).as_deref(),
            Some("3: 7.0 ms, 1: 4.0 ms")
        );
        assert_eq!(worst_seconds(&[0, 0], 3), None);
    }
}
