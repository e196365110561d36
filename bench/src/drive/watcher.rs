//! Watchers: WebSocket clients of the bridge's `/ws` subscribed to a vehicle, route or bbox, or MQTT
//! subscribers of `vehicles/#`. A WebSocket watcher reads both `update` frames (one state) and
//! batched `updates` frames (`"batch":true`, every changed vehicle of one tick); each state of a
//! batch is one delivery, timed on the frame's arrival. Each records the latency of the first delivery of every fix of
//! this run's vehicles (a state whose `ts` is not newer than the last one this watcher saw for
//! that vehicle is a repeat: counted, not timed) and drains after the drivers stop until 2 s
//! pass quietly (at most 10 s).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fleetmq_codec::{Packet, QoS};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{self, ConnectOptions, Reader, Writer};
use crate::report;

use super::Shared;

/// Quiet time after the drivers stop that ends a watcher.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// Longest drain after the drivers stop.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// How often a waiting watcher checks whether to stop.
const POLL: Duration = Duration::from_millis(100);

/// A WebSocket connection to the bridge.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The parts of a processed state the bench reads.
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
    let (mut ws, _) = tokio::time::timeout(
        client::HANDSHAKE_TIMEOUT,
        tokio_tungstenite::connect_async(url),
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
    loop {
        match tokio::time::timeout(POLL, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let msg: WsMessage = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => bail!("unreadable bridge message ({e}): {}", text.as_str()),
                };
                match (msg.kind.as_ref(), msg.vehicle) {
                    ("update", Some(state)) => watch.state(&shared, &state),
                    ("updates", _) => {
                        for state in &msg.vehicles {
                            watch.state(&shared, state);
                        }
                    }
                    ("error", _) => bail!(
                        "bridge error: {}",
                        msg.message.unwrap_or(Cow::Borrowed("(no message)"))
                    ),
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => bail!("bridge closed the WebSocket: {frame:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => bail!("bridge closed the WebSocket"),
            Err(_) => {}
        }
        if watch.finished(&shared) {
            break;
        }
    }
    ws.close(None).await.ok();
    Ok((watch.count, watch.repeats, watch.histogram))
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
    loop {
        match tokio::time::timeout(POLL, r.fill()).await {
            Ok(Ok(true)) | Err(_) => {}
            Ok(Ok(false)) => bail!("broker closed the watcher"),
            Ok(Err(e)) => return Err(e),
        }
        while let Some(packet) = r.try_next()? {
            if let Packet::Publish(p) = packet {
                if p.retain {
                    // Retained states are the last run's or an earlier fix's, not a delivery.
                    continue;
                }
                if let Ok(state) = serde_json::from_slice::<StateRef>(&p.payload) {
                    watch.state(&shared, &state);
                }
            }
        }
        if watch.finished(&shared) {
            break;
        }
    }
    Ok((watch.count, watch.repeats, watch.histogram))
}

/// What a watcher returns: states received, repeats among them, latency of first deliveries.
pub type Tally = (u64, u64, Histogram<u64>);

/// One watcher's tally.
struct Watch {
    count: u64,
    /// States whose `ts` was not newer than the vehicle's last one seen here.
    repeats: u64,
    /// Newest `ts` seen per vehicle index (`i64::MIN`: none yet); a vector, not a hash map:
    /// one MQTT watcher looks up every state of the run here.
    newest: Vec<i64>,
    histogram: Histogram<u64>,
    last_seen: Instant,
    done_at: Option<Instant>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            count: 0,
            repeats: 0,
            newest: Vec::new(),
            histogram: report::histogram(),
            last_seen: Instant::now(),
            done_at: None,
        }
    }

    fn state(&mut self, shared: &Shared, state: &StateRef) {
        let Some(i) = shared.index(&state.vehicle) else {
            return;
        };
        let now_ns = shared.epoch.elapsed().as_nanos() as u64;
        if i >= self.newest.len() {
            self.newest.resize(i + 1, i64::MIN);
        }
        let Some(newest) = self.newest.get_mut(i) else {
            return;
        };
        if state.ts > *newest {
            *newest = state.ts;
            if let Some(ns) = shared.ledger.received(i, state.ts, now_ns) {
                report::record(&mut self.histogram, ns / 1000);
            }
        } else {
            self.repeats += 1;
        }
        self.count += 1;
        self.last_seen = Instant::now();
        shared.counters.b.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&mut self, shared: &Shared) -> bool {
        if !shared.done.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let since = *self.done_at.get_or_insert(now);
        now.duration_since(self.last_seen) >= DRAIN_QUIET || now.duration_since(since) >= DRAIN_MAX
    }
}
