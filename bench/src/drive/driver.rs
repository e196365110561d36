//! One simulated bus: an MQTT client publishing its simulated fixes to `fleet/{id}/location` on a
//! fixed interval, `ts` set to the wall clock at send time. [`Route`] is the schedule and fix
//! source it shares with the HTTP driver (`http_driver`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use fleetmq_codec::{ByteString, Packet, QoS};
use geo_engine::{Network, SimConfig, SimKind, Simulator};

use crate::client::{self, Reader, Writer};

use super::Shared;

/// One driver's schedule.
pub struct Job {
    /// Driver number (vehicle `{prefix}{index}`).
    pub index: usize,
    /// Route driven.
    pub route: String,
    /// When the first fix goes out.
    pub start: Instant,
    /// Time between fixes.
    pub interval: Duration,
    /// When the driver stops.
    pub end: Instant,
    /// QoS of the publishes.
    pub qos: QoS,
}

/// A driver's fixes on its schedule: the simulator on its route and the interval tick.
pub struct Route {
    sim: Simulator<'static>,
    tick: tokio::time::Interval,
    end: Instant,
    last_ts: i64,
}

impl Route {
    /// # Errors
    /// The route is not in the network.
    pub fn new(job: &Job, net: &'static Network) -> Result<Route> {
        let cfg = SimConfig {
            route: job.route.clone(),
            laps: None,
            interval_ms: job.interval.as_millis().max(1) as i64,
            speed_mps: 10.0,
            noise_m: 2.0,
            dwell_ms: 0,
            seed: job.index as u64 + 1,
            ..SimConfig::default()
        };
        let sim = Simulator::new(net, cfg).with_context(|| format!("route {}", job.route))?;
        let mut tick = tokio::time::interval_at(job.start.into(), job.interval);
        // A late tick is not made up with a burst: fixes closer than the interval would look
        // like teleports to the broker's validation.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Route {
            sim,
            tick,
            end: job.end,
            last_ts: 0,
        })
    }

    /// Waits for the next tick; the next fix's `ts` and
    /// docs/topics-and-payloads.md#location-updates payload, `None` at the end.
    ///
    /// # Errors
    /// Serializing the fix (not expected).
    pub async fn next(&mut self) -> Result<Option<(i64, Bytes)>> {
        loop {
            self.tick.tick().await;
            if Instant::now() >= self.end {
                return Ok(None);
            }
            let Some(sim_fix) = self.sim.next() else {
                return Ok(None);
            };
            if sim_fix.kind != SimKind::Normal {
                continue;
            }
            let mut fix = sim_fix.fix;
            let ts = now_ms().max(self.last_ts + 1);
            fix.ts = ts;
            self.last_ts = ts;
            return Ok(Some((ts, Bytes::from(serde_json::to_vec(&fix)?))));
        }
    }
}

/// Publishes fixes until `job.end`; returns how many were sent.
///
/// # Errors
/// The route is not in the network, or the connection fails.
pub async fn drive(
    reader: Reader,
    mut w: Writer,
    job: Job,
    net: &'static Network,
    shared: Arc<Shared>,
) -> Result<u64> {
    let mut route = Route::new(&job, net)?;
    let topic = ByteString::from(format!("fleet/{}{}/location", shared.prefix, job.index));
    // Acks (QoS 1) and anything else the broker sends are read and dropped.
    let drain = tokio::spawn(drain(reader));
    let mut sent = 0u64;
    let mut pkid = 0u16;
    while let Some((ts, payload)) = route.next().await? {
        pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
        shared
            .ledger
            .sent(job.index, ts, shared.epoch.elapsed().as_nanos() as u64);
        w.queue(&client::publish(&topic, job.qos, pkid, payload))?;
        w.flush().await?;
        sent += 1;
        shared.counters.a.fetch_add(1, Ordering::Relaxed);
        if drain.is_finished() {
            bail!("broker closed driver {}", job.index);
        }
    }
    drain.abort();
    Ok(sent)
}

async fn drain(mut r: Reader) -> Result<()> {
    while let Some(packet) = r.next().await? {
        if let Packet::Disconnect(d) = packet {
            bail!("DISCONNECT {:#04x}", d.reason);
        }
    }
    Ok(())
}

/// Wall clock, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
