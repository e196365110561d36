//! `fleetmq demo`: simulated buses on the route network, each an ordinary MQTT client of the
//! broker (so the demo exercises the same path as real GPS units): most drive their route,
//! every fourth takes a 300 m detour each lap, and one drops offline for a while each cycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetmq_codec::{Bytes, BytesMut, Connect, Packet, Properties, Protocol, Publish, QoS, encode};
use geo_engine::simulate::Detour;
use geo_engine::{Network, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::ingest::now_ms;

/// Seconds between fixes of one bus.
const INTERVAL_MS: i64 = 1000;

/// Starts `count` buses publishing to the broker at `mqtt`; they run until the set is dropped.
pub fn spawn_buses(mqtt: SocketAddr, network: Arc<Network>, count: usize) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let routes: Vec<String> = network.route_ids().map(str::to_owned).collect();
    if routes.is_empty() {
        tracing::warn!("demo: the route network has no routes; no buses");
        return set;
    }
    for i in 0..count {
        let route = routes[i % routes.len()].clone();
        set.spawn(bus(mqtt, network.clone(), i, route));
    }
    set
}

fn sim_config(i: usize, route: String) -> SimConfig {
    SimConfig {
        route,
        laps: None,
        start_ms: now_ms(),
        interval_ms: INTERVAL_MS,
        speed_mps: 8.0 + (i % 5) as f64,
        noise_m: 4.0,
        dwell_ms: 10_000,
        detour: (i % 4 == 3).then_some(Detour {
            start_m: 800.0 + 150.0 * i as f64,
            length_m: 600.0,
            offset_m: 300.0,
        }),
        seed: i as u64 + 1,
        ..SimConfig::default()
    }
}

/// One bus: connect, publish a fix a second, reconnect after errors. Bus 1 goes dark for 90 s
/// after every 120 s of driving, to show offline/online.
async fn bus(mqtt: SocketAddr, network: Arc<Network>, i: usize, route: String) {
    let id = format!("bus-{}", i + 1);
    let Some(sim) = Simulator::new(&network, sim_config(i, route)) else {
        return;
    };
    // The simulator's clock starts now and advances one interval a fix, in step with real time.
    let mut fixes = sim.map(|s| s.fix);
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
            if i == 1 && driven.is_multiple_of(120) {
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
