//! [`super::FramePublisher`] against a real redis-server, read back by redis-rs's own
//! subscriber (an implementation not ours): frames of every size arrive whole and in order, a
//! restarted Redis is reconnected to, a stopped one fails the call within [`RESPONSE`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::{FramePublisher, RESPONSE};
use crate::cluster::resp::RespError;
use crate::persist::test_redis::RedisServer;

/// Longest anything may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

fn publisher(redis: &RedisServer) -> FramePublisher {
    FramePublisher::new(
        redis::IntoConnectionInfo::into_connection_info(redis.url().as_str()).expect("url"),
    )
}

async fn subscriber(redis: &RedisServer, channel: &str) -> redis::aio::PubSub {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe(channel).await.expect("subscribe");
    pubsub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_whole_and_in_order() {
    let redis = RedisServer::start();
    let mut pubsub = subscriber(&redis, "fleetmq:out:0").await;
    let publisher = publisher(&redis);
    let frames: Vec<(String, Bytes)> = [0usize, 1, 2, 1000, 64 * 1024, 300 * 1024, 7]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let frame: Vec<u8> = (0..len).map(|j| ((i * 31 + j) % 256) as u8).collect();
            ("fleetmq:out:0".to_owned(), Bytes::from(frame))
        })
        .collect();
    publisher.publish(&frames).await.expect("published");
    publisher
        .publish(&frames[..2])
        .await
        .expect("again, same connection");
    publisher.ping().await.expect("ping");
    let mut messages = pubsub.on_message();
    for (_, frame) in frames.iter().chain(&frames[..2]) {
        let m = tokio::time::timeout(DEADLINE, messages.next())
            .await
            .expect("in time")
            .expect("a message");
        assert_eq!(m.get_payload_bytes(), &frame[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_connected_to_again() {
    let mut redis = RedisServer::start();
    let publisher = publisher(&redis);
    publisher.ping().await.expect("ping");
    redis.restart();
    let frame = vec![("c".to_owned(), Bytes::from_static(b"after"))];
    let deadline = Instant::now() + DEADLINE;
    // The connection from before the restart fails once; the next call connects again.
    let mut failures = 0;
    while let Err(e) = publisher.publish(&frame).await {
        failures += 1;
        assert!(Instant::now() < deadline, "still failing: {e}");
    }
    assert!(failures <= 1, "{failures} failures");
    let mut pubsub = subscriber(&redis, "c").await;
    publisher.publish(&frame).await.expect("published");
    let m = tokio::time::timeout(DEADLINE, pubsub.on_message().next())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(m.get_payload_bytes(), b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_fails_the_call_in_time() {
    let redis = RedisServer::start();
    let publisher = publisher(&redis);
    publisher.ping().await.expect("ping");
    redis.signal("-STOP");
    let started = Instant::now();
    let r = tokio::time::timeout(DEADLINE, publisher.ping()).await;
    redis.signal("-CONT");
    match r {
        Ok(Err(RespError::Timeout(_, _))) => assert!(started.elapsed() >= RESPONSE),
        other => panic!("not a timeout: {other:?}"),
    }
    publisher
        .ping()
        .await
        .expect("answers again once continued");
}
