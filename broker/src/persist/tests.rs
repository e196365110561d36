//! The store against a real `redis-server` (started here on a free loopback port, persistence
//! off): trackers written behind come back through a restore and continue exactly as the
//! originals would, and restoring 100,000 vehicles is timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use geo_engine::{Network, Outcome, PipelineConfig, Tracker, parse_fixes};

use super::test_redis::{RedisCluster, RedisServer};
use super::{Store, Target};
use crate::ingest::now_ms;

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

/// The JSON of `t`'s state (none: `null`), as ingest hands it to the snapshot.
fn state_json(t: &Tracker) -> String {
    serde_json::to_string(&t.state()).expect("state JSON")
}

/// Writes `trackers` through the store's sink and writer, then restores them with a new store;
/// returns the restored trackers and the restore time.
async fn round_trip(target: &Target, trackers: &[Tracker]) -> (Vec<Tracker>, Duration) {
    let store = Store::open(target, Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    for t in trackers {
        sink.snapshot(t, &state_json(t));
        if let Some(s) = t.state() {
            sink.state(&Arc::new(s.clone()));
        }
    }
    let written = Instant::now();
    let deadline = written + Duration::from_secs(120);
    while store.pending() > 0 {
        assert!(Instant::now() < deadline, "write-behind did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    println!(
        "wrote {} vehicles in {:.2} s",
        trackers.len(),
        written.elapsed().as_secs_f64()
    );
    let fresh = Store::open(target, Duration::from_secs(3600)).expect("store");
    let started = Instant::now();
    let restored = fresh.restore().await.expect("restore");
    (restored.trackers, started.elapsed())
}

/// Waits (30 s at most) until the write-behind buffer is written, then closes the store.
async fn drain_and_close(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending() > 0 {
        assert!(Instant::now() < deadline, "write-behind did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
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
    let (restored, _) = round_trip(&redis.target(), &originals).await;
    assert_continues(&net, &originals, restored, base_ts);
}

/// The same on a 3-master Redis Cluster: the writer's per-slot pipelines land and the restore
/// finds every vehicle on every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_trackers_continue_like_the_originals_on_a_cluster() {
    let cluster = RedisCluster::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let originals = trackers(&net, 2_000, base_ts);
    let (restored, _) = round_trip(&cluster.target(), &originals).await;
    assert_continues(&net, &originals, restored, base_ts);
}

/// Slots move to another master between two writes (a reshard): a per-slot pipeline sent on
/// the client's old slot table gets MOVED, and the client sends it again, whole, to the new
/// owner (right only because it holds one slot), so every vehicle's newest state is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_slots_moved_to_another_master() {
    let cluster = RedisCluster::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let mut fleet = trackers(&net, 1_000, base_ts);
    let store = Store::open(&cluster.target(), Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    let write = |fleet: &[Tracker]| {
        for t in fleet {
            sink.snapshot(t, &state_json(t));
            sink.state(&Arc::new(t.state().expect("a state").clone()));
        }
    };
    let drained = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.pending() > 0 {
            assert!(Instant::now() < deadline, "write-behind did not drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    write(&fleet);
    drained().await;
    tokio::task::block_in_place(|| cluster.move_slots(2000));
    let cfg = PipelineConfig::default();
    for (i, t) in fleet.iter_mut().enumerate() {
        for f in fix(i, 2, base_ts) {
            let _ = t.process(&net, &cfg, f, now_ms());
        }
    }
    write(&fleet);
    drained().await;
    // Each step under a deadline of its own, so that a hang names its step (one was seen,
    // rarely, under a loaded machine: .config/nextest.toml retries this test).
    tokio::time::timeout(Duration::from_secs(30), store.close())
        .await
        .expect("the store closed within 30 s after the reshard");
    let reopened = Store::open(&cluster.target(), Duration::from_secs(3600)).expect("store");
    let restored = tokio::time::timeout(Duration::from_secs(60), reopened.restore())
        .await
        .expect("the restore finished within 60 s after the reshard")
        .expect("restore");
    assert_eq!(restored.trackers.len(), fleet.len());
    let newest = base_ts + 2000;
    let stale: Vec<&str> = restored
        .trackers
        .iter()
        .filter(|t| t.state().map(|s| s.ts) != Some(newest))
        .map(Tracker::vehicle)
        .collect();
    assert!(
        stale.is_empty(),
        "{} vehicles lost their last write: {stale:?}",
        stale.len()
    );
}

/// Restoring 100,000 vehicles: `cargo test -p fleetmq restore_100k -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in a debug build: fills Redis with 100,000 trackers and times the restore"]
async fn restore_100k() {
    let redis = RedisServer::start();
    restore_100k_from(&redis.target()).await;
}

/// The same from a 3-master Redis Cluster (per-slot pipelines, every master scanned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in a debug build: fills a cluster with 100,000 trackers and times the restore"]
async fn restore_100k_on_a_cluster() {
    let cluster = RedisCluster::start();
    restore_100k_from(&cluster.target()).await;
}

async fn restore_100k_from(target: &Target) {
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let originals = trackers(&net, 100_000, base_ts);
    let (restored, took) = round_trip(target, &originals).await;
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
    let store = Store::open(&redis.target(), Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    let write = |t: &Tracker| {
        sink.snapshot(t, &state_json(t));
        sink.state(&Arc::new(t.state().expect("a state").clone()));
    };
    fleet.iter().for_each(write);
    let (state, _) = fleet[1].mark_offline(now_ms()).expect("goes offline once");
    sink.state(&Arc::new(state));
    drain_and_close(&store).await;
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

/// The state's JSON that ingest made for the `vehicles/{id}` payload is what the hash and the
/// track stream store, byte for byte: the writer does not serialize the state again. (The test
/// hands over a pretty-printed JSON, which no serializer of the writer would produce.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_json_is_what_the_hash_and_the_track_store() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let fleet = trackers(&net, 1, now_ms() - 60_000);
    let store = Store::open(&redis.target(), Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    let state = Arc::new(fleet[0].state().expect("a state").clone());
    let json: Arc<str> = serde_json::to_string_pretty(&*state).expect("json").into();
    sink.snapshot(&fleet[0], &json);
    sink.state_json(&state, &json);
    drain_and_close(&store).await;
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let stored: String = redis::cmd("HGET")
        .arg(super::keys::vehicle(&state.vehicle))
        .arg(super::keys::FIELD_STATE)
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(stored, &*json);
    let track: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(super::keys::track(&state.vehicle))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    assert_eq!(track.len(), 1);
    assert_eq!(track[0].0, format!("{}-0", state.ts));
    assert_eq!(track[0].1[0].1, &*json);
    let tracker: Vec<u8> = redis::cmd("HGET")
        .arg(super::keys::vehicle(&state.vehicle))
        .arg(super::keys::FIELD_TRACKER)
        .query_async(&mut conn)
        .await
        .expect("HGET");
    // The binary snapshot ends with the same JSON as its state, and reads back as the tracker
    // written.
    assert!(tracker.starts_with(geo_engine::tracker::SNAPSHOT_MAGIC));
    assert!(
        tracker.ends_with(json.as_bytes()),
        "{}",
        String::from_utf8_lossy(&tracker)
    );
    let tracker = Tracker::read_snapshot(&tracker).expect("a tracker");
    assert_eq!(tracker, fleet[0]);
}

/// A hash written by a fleetmq that stored JSON tracker snapshots (before the binary layout,
/// docs/redis.md#the-tracker-snapshot) restores, and continues like the original: an upgrade
/// keeps every vehicle's filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_snapshots_of_an_earlier_version_restore() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let base_ts = now_ms() - 60_000;
    let fleet = trackers(&net, 20, base_ts);
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for t in &fleet {
        let () = redis::cmd("HSET")
            .arg(super::keys::vehicle(t.vehicle()))
            .arg(super::keys::FIELD_STATE)
            .arg(state_json(t))
            .arg(super::keys::FIELD_TRACKER)
            .arg(serde_json::to_vec(t).expect("json"))
            .query_async(&mut conn)
            .await
            .expect("HSET");
    }
    let store = Store::open(&redis.target(), Duration::from_secs(3600)).expect("store");
    let restored = store.restore().await.expect("restore");
    assert_eq!(restored.skipped, 0);
    assert_continues(&net, &fleet, restored.trackers, base_ts);
}

/// A write Redis refuses inside a batch (a vehicle key holding another type, a track point not
/// newer than its stream's last) is counted and stops nothing else of its pipeline: the other
/// vehicles' hashes and points, and that vehicle's own point, are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_is_counted_and_stops_no_other() {
    let redis = RedisServer::start();
    let net = crate::routes::load(None).expect("bundled routes");
    let fleet = trackers(&net, 3, now_ms() - 60_000);
    let client = redis::Client::open(redis.url()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let vehicle = |t: &Tracker| super::keys::vehicle(t.vehicle());
    let track = |t: &Tracker| super::keys::track(t.vehicle());
    let _: () = redis::cmd("SET")
        .arg(vehicle(&fleet[1]))
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let _: String = redis::cmd("XADD")
        .arg(track(&fleet[2]))
        .arg("9999999999999-0")
        .arg("state")
        .arg("{}")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let store = Store::open(&redis.target(), Duration::from_secs(3600)).expect("store");
    store.start();
    let sink = store.sink();
    for t in &fleet {
        let state = Arc::new(t.state().expect("a state").clone());
        let json: Arc<str> = state_json(t).into();
        sink.snapshot(t, &json);
        sink.state_json(&state, &json);
    }
    drain_and_close(&store).await;
    let mut metrics = String::new();
    store.render_metrics(&mut metrics);
    assert!(
        metrics.contains("fleetmq_redis_command_errors_total 2"),
        "{metrics}"
    );
    for t in [&fleet[0], &fleet[2]] {
        let state: Option<String> = redis::cmd("HGET")
            .arg(vehicle(t))
            .arg(super::keys::FIELD_STATE)
            .query_async(&mut conn)
            .await
            .expect("HGET");
        assert_eq!(state.as_deref(), Some(&*state_json(t)), "{}", t.vehicle());
        let ttl: i64 = redis::cmd("PTTL")
            .arg(vehicle(t))
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(ttl > 3_000_000, "{}: TTL {ttl}", t.vehicle());
    }
    // fleet[2]'s stream holds only the entry put there first.
    for (t, points) in [(&fleet[0], 1), (&fleet[1], 1), (&fleet[2], 1)] {
        let len: usize = redis::cmd("XLEN")
            .arg(track(t))
            .query_async(&mut conn)
            .await
            .expect("XLEN");
        assert_eq!(len, points, "{}", t.vehicle());
    }
    let kept: String = redis::cmd("GET")
        .arg(vehicle(&fleet[1]))
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(kept, "not a hash");
}
