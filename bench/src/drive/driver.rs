//! Simulated buses as MQTT clients publishing their simulated fixes to `fleet/{id}/location` on
//! a fixed interval, `ts` set to the wall clock at send time. [`Fixes`] is the fix source and
//! [`Route`] the schedule both share with the HTTP driver (`http_driver`).
//!
//! MQTT drivers run in lanes ([`drive_lane`]): one task and one interval timer for every driver
//! whose start falls in the same [`LANE_SLOT`] of the interval, each driver still on its own
//! connection. With one task and timer per driver, 10,000 drivers at 2 Hz cost the bench 20,000
//! timer wake-ups a second on the cores the broker needs; lanes of 2 ms make that 500.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use fleetmq_codec::{ByteString, Packet, QoS};
use geo_engine::{Network, SimConfig, SimKind, Simulator};
use tokio::task::JoinHandle;

use crate::client::{self, Reader, Writer};

use super::Shared;

/// Width of the start-time slot whose drivers share one lane: the most a fix is sent before its
/// evenly spread start (drivers of a lane send one after another at the lane's tick).
pub const LANE_SLOT: Duration = Duration::from_millis(2);

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

/// A driver's fixes: the simulator on its route, `ts` strictly increasing.
pub struct Fixes {
    sim: Simulator<'static>,
    last_ts: i64,
}

impl Fixes {
    /// # Errors
    /// The route is not in the network.
    pub fn new(job: &Job, net: &'static Network) -> Result<Fixes> {
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
        Ok(Fixes { sim, last_ts: 0 })
    }

    /// The next fix's `ts` and docs/topics-and-payloads.md#location-updates payload, `None`
    /// when the simulation is over.
    ///
    /// # Errors
    /// Serializing the fix (not expected).
    pub fn next_fix(&mut self) -> Result<Option<(i64, Bytes)>> {
        loop {
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

/// A driver's fixes on its own schedule (the HTTP driver's).
pub struct Route {
    fixes: Fixes,
    tick: tokio::time::Interval,
    end: Instant,
}

impl Route {
    /// # Errors
    /// The route is not in the network.
    pub fn new(job: &Job, net: &'static Network) -> Result<Route> {
        Ok(Route {
            fixes: Fixes::new(job, net)?,
            tick: interval_from(job.start, job.interval),
            end: job.end,
        })
    }

    /// Waits for the next tick; the next fix, `None` at the end.
    ///
    /// # Errors
    /// Serializing the fix (not expected).
    pub async fn next(&mut self) -> Result<Option<(i64, Bytes)>> {
        self.tick.tick().await;
        if Instant::now() >= self.end {
            return Ok(None);
        }
        self.fixes.next_fix()
    }
}

/// A tick every `interval` from `start`. A late tick is not made up with a burst: fixes closer
/// than the interval would look like teleports to the broker's validation.
fn interval_from(start: Instant, interval: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(start.into(), interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// One MQTT driver of a lane.
pub struct Driver {
    job: Job,
    fixes: Fixes,
    topic: ByteString,
    w: Writer,
    pkid: u16,
    sent: u64,
    /// Reads (and drops) what the broker sends: acks at QoS 1, a DISCONNECT.
    drain: JoinHandle<Result<()>>,
}

impl Driver {
    /// A driver on its connection, not yet started.
    ///
    /// # Errors
    /// The route is not in the network.
    pub fn new(
        reader: Reader,
        w: Writer,
        job: Job,
        net: &'static Network,
        shared: &Shared,
    ) -> Result<Driver> {
        Ok(Driver {
            fixes: Fixes::new(&job, net)?,
            topic: ByteString::from(format!("fleet/{}{}/location", shared.prefix, job.index)),
            job,
            w,
            pkid: 0,
            sent: 0,
            drain: tokio::spawn(drain(reader)),
        })
    }

    /// When this driver's first fix is due.
    pub fn start(&self) -> Instant {
        self.job.start
    }

    /// Sends the next fix; `Ok(false)` when this driver has no more.
    async fn send_next(&mut self, shared: &Shared) -> Result<bool> {
        let Some((ts, payload)) = self.fixes.next_fix()? else {
            return Ok(false);
        };
        self.pkid = if self.pkid == u16::MAX {
            1
        } else {
            self.pkid + 1
        };
        shared.ledger.sent(self.job.index, ts, shared.now_ns());
        self.w.queue(&client::publish(
            &self.topic,
            self.job.qos,
            self.pkid,
            payload,
        ))?;
        self.w.flush().await?;
        self.sent += 1;
        if self.drain.is_finished() {
            bail!("broker closed driver {}", self.job.index);
        }
        Ok(true)
    }
}

/// Publishes the fixes of `drivers` (one lane: same interval, same end) on one timer starting at
/// `start`, until their end; returns how many were sent. A driver whose connection fails is
/// reported and dropped; the others go on. Each `flush` normally completes at once (the socket
/// has room); a broker that stops reading one driver holds back the rest of its lane.
pub async fn drive_lane(mut drivers: Vec<Driver>, start: Instant, shared: Arc<Shared>) -> u64 {
    let Some((interval, end)) = drivers.first().map(|d| (d.job.interval, d.job.end)) else {
        return 0;
    };
    let mut tick = interval_from(start, interval);
    let mut sent = 0;
    while !drivers.is_empty() {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let mut k = 0;
        let mut ticked = 0;
        while k < drivers.len() {
            match drivers[k].send_next(&shared).await {
                Ok(true) => {
                    ticked += 1;
                    k += 1;
                }
                Ok(false) => sent += finish(drivers.swap_remove(k)),
                Err(e) => {
                    eprintln!("driver failed: {e:#}");
                    sent += finish(drivers.swap_remove(k));
                }
            }
        }
        shared.counters.a.fetch_add(ticked, Ordering::Relaxed);
    }
    sent + drivers.into_iter().map(finish).sum::<u64>()
}

fn finish(d: Driver) -> u64 {
    d.drain.abort();
    d.sent
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
