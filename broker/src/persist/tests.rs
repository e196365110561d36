//! The store against a real `redis-server` (started here on a free loopback port, persistence
//! off): trackers written behind come back through a restore and continue exactly as the
//! originals would, and restoring 100,000 vehicles is timed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use geo_engine::{Network, Outcome, PipelineConfig, Tracker, parse_fixes};

use super::Store;
use crate::ingest::now_ms;

/// A throw-away redis-server, killed on drop (also used by `cluster::lease`'s tests).
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fix(i: usize, k: i64, base_ts: i64) -> Vec<geo_engine::Fix> {
    let lat = -16.90 - 0.0001 * (i % 500) as f64 - 0.0003 * k as f64;
    let lon = 145.74 + 0.0001 * (i / 500) as f64;
    let json = format!(
        r#"{{"lat":{lat},"lon":{lon},"ts":{},"accuracy":5}}"#,
        base_ts + 1000 * k
    );
    parse_fixes(json.as_bytes()).expect("valid fix")
}

/// `n` trackers with two fixes each.
fn trackers(net: &Network, n: usize, base_ts: i64) -> Vec<Tracker> {
    let cfg = PipelineConfig::default();
    let now = now_ms();
    (0..n)
        .map(|i| {
            let mut t = Tracker::new(&format!("veh-{i}"));
            for k in 0..2 {
                for f in fix(i, k, base_ts) {
                    let _ = t.process(net, &cfg, f, now);
                }
            }
            t
        })
        .collect()
}

/// Writes `trackers` through the store's sink and writer, then restores them with a new store;
/// returns the restored trackers and the restore time.
async fn round_trip(url: &str, trackers: &[Tracker]) -> (Vec<Tracker>, Duration) {
    let store = Store::open(url, Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    for t in trackers {
        sink.snapshot(t);
        if let Some(s) = t.state() {
            sink.state(&Arc::new(s.clone()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.pending() > 0 {
        assert!(Instant::now() < deadline, "write-behind did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    let fresh = Store::open(url, Duration::from_secs(3600)).expect("store");
    let started = Instant::now();
    let restored = fresh.restore().await.expect("restore");
    (restored.trackers, started.elapsed())
}

/// Every restored tracker handles the next fix exactly like its original (filter, dedup and
/// teleport state included).
fn assert_continues(
    net: &Network,
    originals: &[Tracker],
    mut restored: Vec<Tracker>,
    base_ts: i64,
) {
    assert_eq!(restored.len(), originals.len());
    restored.sort_by_key(|t| t.vehicle()[4..].parse::<usize>().unwrap_or(usize::MAX));
    let cfg = PipelineConfig::default();
    let now = now_ms();
    for (i, (orig, back)) in originals.iter().zip(restored).enumerate() {
        assert_eq!(orig.vehicle(), back.vehicle());
        let (mut a, mut b) = (orig.clone(), back);
        let next = fix(i, 2, base_ts).remove(0);
        let (ra, rb) = (
            a.process(net, &cfg, next.clone(), now),
            b.process(net, &cfg, next, now),
        );
        match (ra, rb) {
            (
                Ok(Outcome::Forwarded { state: sa, .. }),
                Ok(Outcome::Forwarded { state: sb, .. }),
            ) => {
                assert!(
                    (sa.lat - sb.lat).abs() < 1e-9 && (sa.lon - sb.lon).abs() < 1e-9,
                    "{i}: smoothing diverged"
                );
                assert_eq!(sa.on_route, sb.on_route);
            }
            (x, y) => panic!("{i}: original {x:?}, restored {y:?}"),
        }
        // The fix just processed is a duplicate for both.
        let again = fix(i, 2, base_ts).remove(0);
        assert!(matches!(
            b.process(net, &cfg, again, now),
            Ok(Outcome::Duplicate)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_trackers_continue_like_the_originals() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let originals = trackers(&net, 2_000, base_ts);
    let (restored, _) = round_trip(&redis.url(), &originals).await;
    assert_continues(&net, &originals, restored, base_ts);
}

/// Restoring 100,000 vehicles: `cargo test -p fleetmq restore_100k -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in a debug build: fills Redis with 100,000 trackers and times the restore"]
async fn restore_100k() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let originals = trackers(&net, 100_000, base_ts);
    let (restored, took) = round_trip(&redis.url(), &originals).await;
    println!(
        "restored {} vehicles in {:.2} s",
        restored.len(),
        took.as_secs_f64()
    );
    assert_continues(&net, &originals, restored, base_ts);
    assert!(took < Duration::from_secs(60), "restore took {took:?}");
}

/// A vehicle gone offline leaves `fleetmq:geo` (GEOSEARCH finds live vehicles only); its hash
/// stays until the state TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_vehicle_leaves_the_geo_set_and_keeps_its_ttl() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let mut fleet = trackers(&net, 2, base_ts);
    let store = Store::open(&redis.url(), Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    let write = |t: &Tracker| {
        sink.snapshot(t);
        sink.state(&Arc::new(t.state().expect("a state").clone()));
    };
    fleet.iter().for_each(write);
    let (state, _) = fleet[1].mark_offline(now_ms()).expect("goes offline once");
    sink.state(&Arc::new(state));
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending() > 0 {
        assert!(Instant::now() < deadline, "write-behind did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut members: Vec<String> = redis::cmd("ZRANGE")
        .arg(super::keys::GEO)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    members.sort();
    assert_eq!(members, vec![fleet[0].vehicle().to_owned()]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(super::keys::vehicle(fleet[1].vehicle()))
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 3_600_000, "PTTL {ttl}");
}
