//! Leases and fencing against a real `redis-server`: two nodes' lease tables on one Redis, the
//! first one "paused" (its renewal and release-request tasks are not running), the second one
//! taking the vehicle over. The paused owner's writes under its older epoch are refused by Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use geo_engine::{Network, PipelineConfig};
use redis::Value;

use super::Leases;
use crate::ingest::{Ingest, Source};
use crate::metrics::Metrics;
use crate::persist::fence::{FENCED_OUT, FENCED_WRITE};
use crate::persist::test_redis::RedisServer;
use crate::persist::{Store, keys};

const TTL: Duration = Duration::from_secs(3600);

/// A node: its store (writer running), ingest and lease table (tasks not started).
fn node(url: &str, name: &str) -> (Arc<Store>, Arc<Ingest>, Arc<Leases>) {
    let target = crate::persist::Target::Single(url.to_owned());
    let store = Arc::new(Store::open(&target, TTL).expect("store"));
    store.start();
    let ingest = Arc::new(
        Ingest::new(
            Arc::new(Network::bundled()),
            PipelineConfig::default(),
            vec![store.sink()],
            Arc::new(Metrics::default()),
        )
        .with_leases(true),
    );
    let leases = Leases::open(
        &crate::persist::Target::Single(url.to_owned()),
        name,
        ingest.clone(),
        store.clone(),
        TTL,
        Duration::from_secs(60),
    )
    .expect("leases");
    (store, ingest, leases)
}

fn fix(k: i64, base_ts: i64) -> Vec<u8> {
    let lat = -16.92 - 0.0003 * k as f64;
    format!(
        r#"{{"lat":{lat},"lon":145.77,"ts":{},"accuracy":5}}"#,
        base_ts + 1000 * k
    )
    .into_bytes()
}

async fn hget(conn: &mut crate::persist::Conn, vehicle: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(keys::vehicle(vehicle))
        .arg(field)
        .query_async(conn)
        .await
        .expect("HGET")
}

/// The `ts` of the state stored for `vehicle`.
async fn stored_ts(conn: &mut crate::persist::Conn, vehicle: &str) -> Option<i64> {
    let state = hget(conn, vehicle, keys::FIELD_STATE).await?;
    serde_json::from_str::<serde_json::Value>(&state).ok()?["ts"].as_i64()
}

async fn wait_until<F: AsyncFnMut() -> bool>(mut cond: F, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_owner_is_fenced_out_and_the_new_one_continues_its_filters() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (store_a, ingest_a, a) = node(&url, "node-a");
    let (store_b, ingest_b, b) = node(&url, "node-b");
    let mut conn = store_a.connection();
    let vehicle = "bus-fence";
    let base_ts = crate::ingest::now_ms() - 60_000;

    a.acquire(vehicle).await.expect("a acquires");
    let epoch_a = a.held.get(vehicle).map(|h| h.epoch).expect("a holds it");
    for k in 0..3 {
        ingest_a
            .location(vehicle, &fix(k, base_ts), Instant::now(), Source::Mqtt)
            .expect("fix taken");
    }
    wait_until(
        async || stored_ts(&mut conn, vehicle).await == Some(base_ts + 2000),
        "a's state",
    )
    .await;

    // `a` pauses: it renews nothing and no longer listens for release requests, so `b` finds
    // nobody on its channel and takes the vehicle over with a newer epoch.
    b.acquire(vehicle).await.expect("b takes over");
    let epoch_b = b.held.get(vehicle).map(|h| h.epoch).expect("b holds it");
    assert!(epoch_b > epoch_a, "{epoch_b} > {epoch_a}");
    assert_eq!(
        hget(&mut conn, vehicle, keys::FIELD_LEASE_OWNER)
            .await
            .as_deref(),
        Some("node-b")
    );
    // b continues a's filters: the last fix again is a duplicate, the next one goes through.
    let done = ingest_b.process(
        vehicle,
        geo_engine::parse_fixes(&fix(2, base_ts)).expect("fix"),
        Instant::now(),
        Source::Mqtt,
    );
    assert_eq!(
        (done.taken, done.outputs.len()),
        (1, 0),
        "duplicate dropped"
    );
    ingest_b
        .location(vehicle, &fix(3, base_ts), Instant::now(), Source::Mqtt)
        .expect("b's fix");
    wait_until(
        async || stored_ts(&mut conn, vehicle).await == Some(base_ts + 3000),
        "b's state",
    )
    .await;

    // The paused owner wakes up and processes a (newer) fix under its old epoch: its write
    // is refused, b's state stays.
    ingest_a
        .location(vehicle, &fix(9, base_ts), Instant::now(), Source::Mqtt)
        .expect("a still has its tracker");
    let mut metrics = String::new();
    wait_until(
        async || {
            metrics.clear();
            store_a.render_metrics(&mut metrics);
            metrics.contains("\nfleetmq_redis_fenced_total 1\n")
        },
        "a's fenced write",
    )
    .await;
    assert_eq!(stored_ts(&mut conn, vehicle).await, Some(base_ts + 3000));

    // The same directly: a write carrying the smaller epoch is refused, the current one passes.
    let write = async |conn: &mut crate::persist::Conn, node: &str, epoch: u64| -> Value {
        FENCED_WRITE
            .call(conn, &keys::vehicle(vehicle), |c| {
                c.arg(node).arg(epoch).arg(60_000).arg("").arg("").arg("");
            })
            .await
            .expect("script")
    };
    assert_eq!(
        write(&mut conn, "node-a", epoch_a).await,
        Value::Int(FENCED_OUT)
    );
    assert_eq!(
        write(&mut conn, "node-b", epoch_a).await,
        Value::Int(FENCED_OUT)
    );
    assert_eq!(write(&mut conn, "node-b", epoch_b).await, Value::Int(1));

    // a's renewal finds the lease gone: a drops its tracker. Its release is refused too.
    super::renew::renew(&a).await.expect("renew round");
    assert!(!a.holds(vehicle));
    assert!(ingest_a.with_tracker(vehicle, |_| ()).is_none());

    // b releases: the lease fields go, the epoch stays (the next owner's is larger).
    b.release(std::iter::once(vehicle)).await;
    assert_eq!(
        hget(&mut conn, vehicle, keys::FIELD_LEASE_OWNER).await,
        None
    );
    assert_eq!(
        hget(&mut conn, vehicle, keys::FIELD_LEASE_EPOCH).await,
        Some(epoch_b.to_string())
    );
    a.acquire(vehicle).await.expect("a again");
    assert!(a.held.get(vehicle).map(|h| h.epoch) > Some(epoch_b));
    store_a.close().await;
    store_b.close().await;
}

/// The `lease_until` stored for `vehicle`.
async fn lease_until(conn: &mut crate::persist::Conn, vehicle: &str) -> u64 {
    hget(conn, vehicle, keys::FIELD_LEASE_UNTIL)
        .await
        .and_then(|u| u.parse().ok())
        .expect("lease_until")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_write_extends_the_lease_and_that_renewal_is_skipped_until_a_write_is_refused() {
    use crate::persist::fence::Fence;
    let redis = RedisServer::start();
    let url = redis.url();
    let (store, ingest, a) = node(&url, "node-a");
    let mut conn = store.connection();
    let vehicle = "bus-renewed";
    let base_ts = crate::ingest::now_ms() - 60_000;
    a.acquire(vehicle).await.expect("a acquires");
    // Marks lease_until so that whatever extends the lease shows (the lease itself checks only
    // owner and epoch).
    let mark = async |conn: &mut crate::persist::Conn| {
        let _: () = redis::cmd("HSET")
            .arg(keys::vehicle(vehicle))
            .arg(keys::FIELD_LEASE_UNTIL)
            .arg(1)
            .query_async(conn)
            .await
            .expect("HSET");
    };
    mark(&mut conn).await;
    let now = crate::ingest::now_ms() as u64;

    ingest
        .location(vehicle, &fix(0, base_ts), Instant::now(), Source::Mqtt)
        .expect("fix taken");
    wait_until(
        async || stored_ts(&mut conn, vehicle).await == Some(base_ts),
        "the fenced write",
    )
    .await;
    let written = a.held.get(vehicle).map(|h| h.written.load(Relaxed));
    assert!(written.is_some_and(|w| w != super::NEVER), "{written:?}");
    let until = lease_until(&mut conn, vehicle).await;
    assert!(
        until >= now + 4_000,
        "the write extended the lease: {until} vs now {now}"
    );

    // The renewal round skips it: Redis is not touched. (The writer's report again, as of
    // now: a loaded machine may take longer than RENEWED_BY_WRITE to get here.)
    mark(&mut conn).await;
    a.renewed_by_write(&mut std::iter::once(vehicle), Instant::now());
    super::renew::renew(&a).await.expect("renew round");
    assert_eq!(a.stats.renew_skipped.load(Relaxed), 1);
    assert_eq!(lease_until(&mut conn, vehicle).await, 1);

    // After a refused write the next round renews every lease, this one too.
    a.write_refused();
    super::renew::renew(&a).await.expect("renew round");
    assert_eq!(a.stats.renew_skipped.load(Relaxed), 1);
    assert!(lease_until(&mut conn, vehicle).await >= now + 4_000);
    assert!(a.holds(vehicle));
    // And the one after skips it again, after another write.
    a.renewed_by_write(&mut std::iter::once(vehicle), Instant::now());
    super::renew::renew(&a).await.expect("renew round");
    assert_eq!(a.stats.renew_skipped.load(Relaxed), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_releases_its_previous_runs_lease_on_request() {
    let redis = RedisServer::start();
    let url = redis.url();
    let vehicle = "bus-restart";
    // The previous run of node-a took the vehicle, then died: it renews and answers nothing.
    let (store_old, _ingest_old, old) = node(&url, "node-a");
    old.acquire(vehicle).await.expect("old run acquires");
    store_old.close().await;
    drop(old);
    let (store_a, _ingest_a, restarted) = node(&url, "node-a");
    restarted.start();
    let (store_b, _ingest_b, b) = node(&url, "node-b");
    let mut conn = store_b.connection();
    let channel = super::handoff::channel("node-a");
    wait_until(
        async || {
            let n: (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .expect("NUMSUB");
            n.1 == 1
        },
        "node-a listening",
    )
    .await;
    // node-a is alive and listening, so b asks instead of taking over; node-a does not hold
    // the vehicle in this run but Redis says it is node-a's: released at once, not after 5 s.
    let started = Instant::now();
    b.acquire(vehicle).await.expect("b acquires");
    assert!(b.holds(vehicle));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        b.stats
            .taken_over
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        b.stats.handoffs.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    restarted.close().await;
    store_a.close().await;
    store_b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_that_keeps_the_vehicle_makes_the_fix_wait_then_busy() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (store_b, _ingest_b, b) = node(&url, "node-b");
    let mut conn = store_b.connection();
    let vehicle = "bus-kept";
    // node-x: listening on its channel (so it is alive) but never releasing; its lease is
    // valid for a minute.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(super::handoff::channel("node-x"))
        .await
        .expect("subscribe");
    hold_elsewhere(&mut conn, vehicle, "node-x").await;
    let started = Instant::now();
    let refused = b.acquire(vehicle).await;
    let waited = started.elapsed();
    assert!(
        matches!(&refused, Err(super::LeaseError::Busy(owner)) if owner == "node-x"),
        "{refused:?}"
    );
    assert!(
        waited >= super::HANDOFF_WAIT && waited < super::HANDOFF_WAIT + Duration::from_secs(2),
        "{waited:?}"
    );
    let mut requests = pubsub.on_message();
    let first = tokio::time::timeout(
        Duration::from_secs(1),
        futures_util::StreamExt::next(&mut requests),
    )
    .await
    .expect("a release request")
    .expect("message");
    assert_eq!(first.get_payload_bytes(), vehicle.as_bytes());
    assert!(!b.holds(vehicle));
    assert_eq!(
        hget(&mut conn, vehicle, keys::FIELD_LEASE_OWNER)
            .await
            .as_deref(),
        Some("node-x")
    );
    store_b.close().await;
}

/// Vehicles arriving together share script calls: 150 first acquisitions taken at once are
/// three calls (64 + 64 + 22), each vehicle's lease is this node's, and each answer is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_acquisitions_taken_together_share_script_calls() {
    let redis = RedisServer::start();
    let (store, _ingest, a) = node(&redis.url(), "node-a");
    let mut conn = store.connection();
    // One of them is another live-looking node's: its answer says so, the others are ours.
    hold_elsewhere(&mut conn, "bus-b-7", "node-x").await;
    let mut answers = Vec::new();
    let mut requests = Vec::new();
    for i in 0..150 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        requests.push(super::batch::Request {
            key: keys::vehicle(&format!("bus-b-{i}")),
            reply,
        });
        answers.push(answer);
    }
    let calls_before = script_calls(&mut conn).await;
    super::batch::call(&a, requests).await;
    assert_eq!(script_calls(&mut conn).await - calls_before, 3);
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.await.expect("answered");
        let vehicle = format!("bus-b-{i}");
        if i == 7 {
            assert!(
                matches!(&answer, Some(super::Acquired::Held { owner, .. }) if owner == "node-x"),
                "{answer:?}"
            );
            continue;
        }
        assert!(
            matches!(answer, Some(super::Acquired::Got { tracker: None, .. })),
            "{vehicle}: {answer:?}"
        );
        assert_eq!(
            hget(&mut conn, &vehicle, keys::FIELD_LEASE_OWNER)
                .await
                .as_deref(),
            Some("node-a")
        );
    }
    store.close().await;
}

/// Writes `owner`'s lease of `vehicle` (epoch 5) valid for another minute, as another node
/// would.
async fn hold_elsewhere(conn: &mut crate::persist::Conn, vehicle: &str, owner: &str) {
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    let _: () = redis::cmd("HSET")
        .arg(keys::vehicle(vehicle))
        .arg(keys::FIELD_LEASE_OWNER)
        .arg(owner)
        .arg(keys::FIELD_LEASE_EPOCH)
        .arg(5)
        .arg(keys::FIELD_LEASE_UNTIL)
        .arg(secs * 1000 + 60_000)
        .query_async(conn)
        .await
        .expect("HSET");
}

/// `EVALSHA` calls Redis has run so far.
async fn script_calls(conn: &mut crate::persist::Conn) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    // Calls that ran the script: a call answered NOSCRIPT (sent before the node's first load
    // of the script finished, then resent) counts among `failed_calls`.
    let stat = |line: &str, name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .map_or(0, |l| stat(l, "calls=") - stat(l, "failed_calls="))
}

/// Many drivers' first fixes at once on a started node: every vehicle is acquired through the
/// batch task, in fewer script calls than vehicles, and one held by a node that is gone is
/// still taken over (the batch's "held" answer goes on to the per-vehicle handoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_first_fixes_is_acquired_in_batches() {
    let redis = RedisServer::start();
    let (store, _ingest, a) = node(&redis.url(), "node-a");
    a.start();
    let mut conn = store.connection();
    // node-gone holds one of them for another minute but listens on nothing.
    hold_elsewhere(&mut conn, "storm-0", "node-gone").await;
    let vehicles: Vec<String> = (0..400).map(|i| format!("storm-{i}")).collect();
    let tasks: Vec<_> = vehicles
        .iter()
        .map(|v| {
            let (a, v) = (a.clone(), v.clone());
            tokio::spawn(async move { a.acquire(&v).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("acquired");
    }
    for v in &vehicles {
        assert!(a.is_held(v), "{v}");
    }
    let stats = &a.stats;
    assert_eq!(stats.acquired.load(Relaxed), 400);
    assert_eq!(stats.taken_over.load(Relaxed), 1);
    assert_eq!(stats.unleased.load(Relaxed), 0);
    let calls = stats.acquire_calls.load(Relaxed);
    println!("{calls} script calls for 400 first acquisitions");
    assert!((1..400).contains(&calls), "{calls} batched calls for 400");
    assert_eq!(
        hget(&mut conn, "storm-0", keys::FIELD_LEASE_OWNER)
            .await
            .as_deref(),
        Some("node-a")
    );
    a.close().await;
    store.close().await;
}

/// A Redis that forgot the scripts (restarted, or `SCRIPT FLUSH`) answers the release with
/// NOSCRIPT: the script is loaded again and the release sent once more, so the vehicle is free
/// at once rather than when its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_after_the_scripts_were_flushed_still_frees_the_vehicle() {
    let redis = RedisServer::start();
    let (store, ingest, a) = node(&redis.url(), "node-a");
    let mut conn = store.connection();
    let vehicle = "bus-flushed";
    let base_ts = crate::ingest::now_ms() - 60_000;
    a.acquire(vehicle).await.expect("a acquires");
    ingest
        .location(vehicle, &fix(0, base_ts), Instant::now(), Source::Mqtt)
        .expect("fix taken");
    // The node knows the script's SHA1 (as after any earlier release); Redis then forgets it.
    FENCED_WRITE.sha(&mut conn).await.expect("script loaded");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH");
    a.release(std::iter::once(vehicle)).await;
    assert_eq!(
        hget(&mut conn, vehicle, keys::FIELD_LEASE_OWNER).await,
        None
    );
    assert_eq!(a.stats.released.load(Relaxed), 1);
    // The release flushed the tracker with it.
    assert_eq!(stored_ts(&mut conn, vehicle).await, Some(base_ts));
}
