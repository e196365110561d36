//! [`super::pubsub`] against real servers: a message published reaches a subscriber on one
//! redis-server and on a 3-master Redis Cluster (sharded, channels on every master), a
//! subscriber keeps receiving after Redis restarts, and a full publish queue drops and counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::Receiver;

use super::pubsub::{PUBLISH_QUEUE, PubSub};
use super::test_redis::{RedisCluster, RedisServer};
use super::{Target, keys};

/// Longest a message may take to arrive once the subscription is made, on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);
/// Publishing again this often until the subscriber gets a message: the subscription is made
/// in the background, and pub/sub does not keep what was published before it.
const REPEAT: Duration = Duration::from_millis(100);

/// Publishes `payload` on every channel of `channels` every [`REPEAT`] until `rx` has had a
/// message of each; returns what arrived per channel.
async fn publish_until_received(
    bus: &PubSub,
    rx: &mut Receiver<(String, Bytes)>,
    channels: &[String],
    payload: &str,
) -> BTreeMap<String, Bytes> {
    let publisher = bus.publisher();
    let deadline = Instant::now() + DEADLINE;
    let mut got = BTreeMap::new();
    while got.len() < channels.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} channels delivered {payload:?} within {DEADLINE:?}",
            got.len(),
            channels.len()
        );
        for c in channels.iter().filter(|c| !got.contains_key(*c)) {
            publisher.publish(c, Bytes::from(payload.to_owned()));
        }
        let until = tokio::time::Instant::now() + REPEAT;
        while let Ok(Some((channel, body))) = tokio::time::timeout_at(until, rx.recv()).await {
            if body == payload.as_bytes() {
                got.insert(channel, body);
            }
        }
    }
    got
}

/// Channels whose hash slots are spread over the whole slot range (so over every master).
fn spread_channels(n: usize) -> Vec<String> {
    let mut by_range: BTreeMap<u16, String> = BTreeMap::new();
    let ranges = u16::try_from(n).expect("few channels");
    let mut i = 0;
    while by_range.len() < n {
        let c = format!("fleetmq:bus:test:{i}");
        by_range
            .entry(keys::slot(&c) / (keys::SLOTS / ranges + 1))
            .or_insert(c);
        i += 1;
    }
    by_range.into_values().collect()
}

async fn delivers(target: Target) {
    let bus = PubSub::open(&target).expect("pubsub");
    let channels = spread_channels(12);
    let mut rx = bus.subscribe(channels.clone()).expect("subscribe");
    let got = publish_until_received(&bus, &mut rx, &channels, "hello").await;
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), {
        let mut c = channels.clone();
        c.sort();
        c
    });
    let mut metrics = String::new();
    bus.render_metrics(&mut metrics);
    assert!(!metrics.contains("fleetmq_redis_pubsub_received_total 0\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_subscriber_on_one_node() {
    let redis = RedisServer::start();
    delivers(redis.target()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_subscriber_on_a_cluster() {
    let cluster = RedisCluster::start();
    delivers(cluster.target()).await;
}

/// A subscriber on `target` receives, `restart` restarts Redis (or moves slots), and it
/// receives again.
async fn survives_restart(target: Target, channels: Vec<String>, restart: impl FnOnce()) {
    let bus = PubSub::open(&target).expect("pubsub");
    let mut rx = bus.subscribe(channels.clone()).expect("subscribe");
    publish_until_received(&bus, &mut rx, &channels, "before").await;
    tokio::task::block_in_place(restart);
    publish_until_received(&bus, &mut rx, &channels, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_survives_a_redis_restart() {
    let mut redis = RedisServer::start();
    let channels = vec!["fleetmq:bus:restart".to_owned()];
    survives_restart(redis.target(), channels, || redis.restart()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_survives_a_cluster_restart() {
    let mut cluster = RedisCluster::start();
    survives_restart(cluster.target(), spread_channels(6), || cluster.restart()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_follows_slots_moved_to_another_master() {
    let cluster = RedisCluster::start();
    // Channels on the first master's lowest slots, which the reshard moves.
    let channels: Vec<String> = (0..)
        .map(|i| format!("fleetmq:bus:moved:{i}"))
        .filter(|c| keys::slot(c) < 1000)
        .take(4)
        .collect();
    survives_restart(cluster.target(), channels, || cluster.move_slots(2000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_never_blocks_and_counts_what_it_drops() {
    // Nothing listens on this port: every message waits in the queue or is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let bus = PubSub::open(&Target::Single(format!("redis://127.0.0.1:{port}/"))).expect("pubsub");
    let publisher = bus.publisher();
    let started = Instant::now();
    for i in 0..2 * PUBLISH_QUEUE {
        publisher.publish("fleetmq:bus:nowhere", Bytes::from(i.to_string()));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "publish waited");
    let mut metrics = String::new();
    bus.render_metrics(&mut metrics);
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fleetmq_redis_pubsub_publish_dropped_total "))
        .and_then(|v| v.parse().ok())
        .expect("the drop counter");
    assert!(
        dropped >= PUBLISH_QUEUE as u64 / 2,
        "dropped {dropped} of {}",
        2 * PUBLISH_QUEUE
    );
}
