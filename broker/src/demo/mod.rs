//! `fleetmq demo`: simulated buses on the route network, each an ordinary MQTT client of the
//! broker (so the demo exercises the same path as real GPS units). It is staged so that a
//! first-time visitor sees every feature within a minute:
//!
//! - a third of the buses (at least three) share the first route, spread evenly along it
//!   instead of starting stacked at its first stop;
//! - `bus-1` starts at that route's start and leaves it for a 300 m detour 200 m in, on every
//!   lap (a `deviation`, then `back_on_route`, within the first minute);
//! - `bus-2` runs late: slower and with long dwells, it falls behind the others on the route,
//!   and against the demo's timetable ([`timetable`]) it is about three minutes late from the start and
//!   later along each leg (`delay_s`, the map's `+N min`);
//! - the rest drive the other routes, and one of them drops offline for 90 s every two minutes.
//!
//! Every bus names its trip (`"{bus}/{corridor}-{lap}"`), a trip of that timetable, so the
//! vehicle panel lists its next stops with scheduled times and delays. A network that has its
//! own timetable (a GTFS `--routes`) keeps it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetmq_codec::{Bytes, BytesMut, Connect, Packet, Properties, Protocol, Publish, QoS, encode};
use geo_engine::simulate::Detour;
use geo_engine::{Network, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

pub mod timetable;

/// Speed and dwell the late bus is timetabled at (an on-time bus's), m/s and ms.
const NOMINAL_SPEED_MPS: f64 = 6.0;
const NOMINAL_DWELL_MS: i64 = 20_000;

/// Seconds between fixes of one bus.
const INTERVAL_MS: i64 = 1000;
/// Fixes counted at most when measuring a lap to spread buses along it.
const MAX_LAP_FIXES: usize = 100_000;

/// What one bus does.
#[derive(Debug, Clone, PartialEq)]
struct Role {
    route: String,
    /// Where on the lap it starts, as a fraction of the lap's fixes.
    start: f64,
    detour: bool,
    late: bool,
    /// Goes dark for 90 s after every 120 s of driving.
    drops_out: bool,
}

/// The role of each of `count` buses over `routes` (see the module doc).
fn roles(routes: &[String], count: usize) -> Vec<Role> {
    let main = if routes.len() == 1 {
        count
    } else {
        (count / 3).max(3).min(count)
    };
    let first_other = 1.min(routes.len() - 1);
    let others = routes.len() - first_other;
    let route_of = |i: usize| {
        if i < main {
            0
        } else {
            first_other + (i - main) % others
        }
    };
    let on_route = |r: usize| (0..count).filter(|&j| route_of(j) == r).count();
    (0..count)
        .map(|i| {
            let r = route_of(i);
            let slot = (0..i).filter(|&j| route_of(j) == r).count();
            let spread = slot as f64 / on_route(r) as f64;
            // Other routes mostly start at the same terminus: a phase per route keeps their
            // buses apart too.
            let phase = if r == 0 { 0.0 } else { 0.37 * r as f64 };
            Role {
                route: routes[r].clone(),
                start: (spread + phase).fract(),
                detour: i == 0,
                late: i == 1 && main > 1,
                drops_out: i == main,
            }
        })
        .collect()
}

/// One simulated bus: its id, its run and how many fixes of it lie before the demo's start.
#[derive(Debug, Clone)]
struct Bus {
    id: String,
    role: Role,
    cfg: SimConfig,
    skip: usize,
}

/// The demo's buses, placed along their routes as of `t0_ms`.
#[derive(Debug, Clone)]
pub struct Demo {
    buses: Vec<Bus>,
    t0_ms: i64,
}

impl Demo {
    /// `count` buses over the routes of `network`, their first fixes at `t0_ms`.
    pub fn new(network: &Network, count: usize, t0_ms: i64) -> Demo {
        let routes: Vec<String> = network.route_ids().map(str::to_owned).collect();
        if routes.is_empty() {
            tracing::warn!("demo: the route network has no routes; no buses");
            return Demo {
                buses: Vec::new(),
                t0_ms,
            };
        }
        let buses = roles(&routes, count)
            .into_iter()
            .enumerate()
            .map(|(i, role)| {
                let skip = skip_fixes(network, i, &role);
                // The simulator's clock starts `skip` fixes before `t0_ms`, so that after
                // skipping them its fixes are in step with real time.
                let cfg = sim_config(i, &role, t0_ms - skip as i64 * INTERVAL_MS);
                Bus {
                    id: format!("bus-{}", i + 1),
                    role,
                    cfg,
                    skip,
                }
            })
            .collect();
        Demo { buses, t0_ms }
    }

    /// `network` with the demo's timetable ([`timetable`]), unless it has one of its own.
    pub fn with_timetable(&self, network: Network) -> Network {
        if network.schedule().is_some() {
            return network;
        }
        let until = self.t0_ms + timetable::HORIZON_MS;
        let trips = self
            .buses
            .iter()
            .flat_map(|b| {
                let nominal = b.role.late.then(|| SimConfig {
                    speed_mps: NOMINAL_SPEED_MPS,
                    dwell_ms: NOMINAL_DWELL_MS,
                    ..b.cfg.clone()
                });
                timetable::trips(
                    &network,
                    &b.id,
                    &b.cfg,
                    nominal.as_ref(),
                    (self.t0_ms, until),
                )
            })
            .collect();
        match timetable::schedule(&network, trips) {
            Some(s) => network.with_schedule(s),
            None => network,
        }
    }

    /// Starts the buses publishing to the broker at `mqtt`; they run until the set is dropped.
    pub fn spawn(self, mqtt: SocketAddr, network: Arc<Network>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for b in self.buses {
            set.spawn(bus(mqtt, network.clone(), b));
        }
        set
    }
}

fn sim_config(i: usize, role: &Role, start_ms: i64) -> SimConfig {
    SimConfig {
        route: role.route.clone(),
        laps: None,
        start_ms,
        interval_ms: INTERVAL_MS,
        speed_mps: if role.late { 5.0 } else { 8.0 + (i % 5) as f64 },
        noise_m: 4.0,
        dwell_ms: if role.late { 30_000 } else { 10_000 },
        detour: role.detour.then_some(Detour {
            start_m: 200.0,
            length_m: 600.0,
            offset_m: 300.0,
        }),
        detour_every_lap: true,
        seed: i as u64 + 1,
        ..SimConfig::default()
    }
}

/// Fixes to skip so the bus starts `role.start` of the way along its lap.
fn skip_fixes(network: &Network, i: usize, role: &Role) -> usize {
    if role.start <= 0.0 {
        return 0;
    }
    let lap = SimConfig {
        laps: Some(1),
        ..sim_config(i, role, 0)
    };
    let fixes = Simulator::new(network, lap).map_or(0, |s| s.take(MAX_LAP_FIXES).count());
    (fixes as f64 * role.start) as usize
}

/// One bus: connect, publish a fix a second, reconnect after errors.
async fn bus(mqtt: SocketAddr, network: Arc<Network>, b: Bus) {
    let Bus {
        id,
        role,
        cfg,
        skip,
    } = b;
    let Some(sim) = Simulator::new(&network, cfg) else {
        return;
    };
    // The trip names the bus too: each bus runs its own trips of the demo's timetable.
    let mut fixes = sim
        .map(|s| {
            let mut f = s.fix;
            f.trip = f.trip.map(|t| format!("{id}/{t}"));
            f
        })
        .skip(skip);
    let mut driven = 0u32;
    loop {
        let Ok(mut stream) = connect(mqtt, &id).await else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        };
        let mut out = BytesMut::new();
        let mut tick = tokio::time::interval(Duration::from_millis(INTERVAL_MS as u64));
        loop {
            tick.tick().await;
            let Some(fix) = fixes.next() else { return };
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: format!("fleet/{id}/location").into(),
                pkid: 0,
                properties: Properties::default(),
                payload: Bytes::from(fix.to_json()),
            };
            out.clear();
            if encode(&Packet::Publish(publish), Protocol::V5, &mut out).is_err()
                || stream.write_all(&out).await.is_err()
            {
                break;
            }
            driven += 1;
            if role.drops_out && driven.is_multiple_of(120) {
                drop(stream);
                // Skip the fixes of the dark period, as a unit out of coverage would.
                for _ in 0..90 {
                    tick.tick().await;
                    fixes.next();
                }
                break;
            }
        }
    }
}

async fn connect(mqtt: SocketAddr, id: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(mqtt).await?;
    let connect = Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), Protocol::V5, &mut out).map_err(std::io::Error::other)?;
    stream.write_all(&out).await?;
    // CONNACK is small; its content does not matter to a demo bus.
    let mut ack = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut ack)).await;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_route_shared_and_spread_with_a_detour_and_a_late_bus() {
        let routes: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let r = roles(&routes, 12);
        let on_a: Vec<&Role> = r.iter().filter(|x| x.route == "A").collect();
        assert_eq!(on_a.len(), 4);
        let starts: Vec<f64> = on_a.iter().map(|x| x.start).collect();
        assert_eq!(starts, vec![0.0, 0.25, 0.5, 0.75]);
        assert!(r[0].detour && r[1].late);
        assert_eq!(r.iter().filter(|x| x.detour).count(), 1);
        assert_eq!(r.iter().filter(|x| x.drops_out).count(), 1);
        assert!(r[4..].iter().all(|x| x.route != "A"));
        // Other routes' buses are spread too, none at the shared terminus.
        assert!(r[4..].iter().all(|x| x.start > 0.0), "{r:?}");
        let on_b: Vec<f64> = r
            .iter()
            .filter(|x| x.route == "B")
            .map(|x| x.start)
            .collect();
        assert_eq!(on_b.len(), 4);
        assert!((on_b[1] - on_b[0] - 0.25).abs() < 1e-9, "{on_b:?}");
        let single = roles(&routes[..1], 2);
        assert_eq!(single.len(), 2);
        assert_eq!(single[1].start, 0.5);
    }

    /// The late bus runs minutes behind the demo's timetable from its first minute, and an
    /// on-time bus keeps to it; both name trips the timetable has.
    #[test]
    fn timetable_makes_the_late_bus_late_and_the_others_on_time() {
        let t0 = 1_796_000_000_000;
        let net = Network::bundled();
        let demo = Demo::new(&net, 12, t0);
        let net = demo.with_timetable(net);
        let sched = net.schedule().expect("a timetable");
        let cfg = geo_engine::PipelineConfig::default();
        for b in &demo.buses[1..3] {
            let mut t = geo_engine::Tracker::new(&b.id);
            let sim = Simulator::new(&net, b.cfg.clone()).unwrap();
            let mut delays = Vec::new();
            for s in sim.skip(b.skip).take(90) {
                let mut f = s.fix;
                f.trip = f.trip.map(|x| format!("{}/{x}", b.id));
                assert!(sched.trip_index(f.trip.as_deref().unwrap()).is_some());
                let ts = f.ts;
                if let Ok(geo_engine::Outcome::Forwarded { state, .. }) =
                    t.process(&net, &cfg, f, ts)
                {
                    delays.extend(state.delay_s);
                }
            }
            assert!(delays.len() > 30, "{}: {delays:?}", b.id);
            let settled = &delays[10..];
            if b.role.late {
                assert!(settled.iter().all(|&d| d >= 60), "{}: {settled:?}", b.id);
            } else {
                assert!(
                    settled.iter().all(|&d| d.abs() <= 30),
                    "{}: {settled:?}",
                    b.id
                );
            }
        }
        assert!(demo.buses[1].role.late && !demo.buses[2].role.late);
    }

    #[test]
    fn the_detour_bus_detours_on_every_lap() {
        let net = Network::bundled();
        let demo = Demo::new(&net, 12, 0);
        let b = &demo.buses[0];
        assert!(b.role.detour);
        let three = SimConfig {
            laps: Some(3),
            ..b.cfg.clone()
        };
        let laps: std::collections::BTreeSet<u32> = Simulator::new(&net, three)
            .unwrap()
            .filter(|s| s.offset_m.abs() > 100.0)
            .filter_map(|s| s.fix.trip?.rsplit('-').next()?.parse().ok())
            .collect();
        assert_eq!(laps.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    }
}
