//! [`super::Subscription`] against a real redis-server: messages arrive whole (binary, 1 MiB)
//! and nothing is left half-read, `AUTH` with the URL's password (a wrong or missing one
//! refused), a Redis that stops answering noticed.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Subscription;
use crate::cluster::resp::{IDLE, RespError};
use crate::persist::test_redis::RedisServer;

/// The next message on `sub`, within `deadline`.
async fn next(sub: &mut Subscription, deadline: Duration) -> (Bytes, Bytes) {
    tokio::time::timeout(deadline, sub.next())
        .await
        .expect("a message in time")
        .expect("no error")
        .expect("not closed")
}

fn info(url: &str) -> redis::ConnectionInfo {
    redis::IntoConnectionInfo::into_connection_info(url).expect("url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_whole_from_a_real_redis() {
    let redis = RedisServer::start();
    let channels = vec!["fleetmq:out:0".to_owned(), "fleetmq:out:1".to_owned()];
    let mut sub = Subscription::open(&info(&redis.url()), &channels)
        .await
        .expect("subscribed");
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sent: Vec<(&str, Vec<u8>)> = vec![
        ("fleetmq:out:0", b"n1\n\x00\r\n\xff".to_vec()),
        ("fleetmq:out:1", big),
        ("fleetmq:out:0", Vec::new()),
    ];
    for (channel, payload) in &sent {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(*channel)
            .arg(payload.as_slice())
            .query_async(&mut conn)
            .await
            .expect("publish");
        assert_eq!(
            receivers, 1,
            "the subscription was confirmed before open returned"
        );
    }
    for (channel, payload) in &sent {
        let (c, p) = next(&mut sub, Duration::from_secs(20)).await;
        assert_eq!(&c[..], channel.as_bytes());
        assert_eq!(&p[..], payload.as_slice());
    }
    assert_eq!(sub.conn.buffered(), 0, "nothing left half-read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_sent_and_a_wrong_one_refused() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = |auth: &str| format!("redis://{auth}@127.0.0.1:{}/", redis.port);
    let channels = vec!["c".to_owned()];
    match Subscription::open(&info(&url(":wrong")), &channels).await {
        Err(RespError::Refused(e)) => assert!(e.contains("WRONGPASS"), "{e}"),
        Err(e) => panic!("refused with another error: {e}"),
        Ok(_) => panic!("a wrong password subscribed"),
    }
    match Subscription::open(
        &info(&format!("redis://127.0.0.1:{}/", redis.port)),
        &channels,
    )
    .await
    {
        Err(RespError::Refused(e)) => assert!(e.contains("NOAUTH"), "{e}"),
        Err(e) => panic!("refused with another error: {e}"),
        Ok(_) => panic!("subscribed without the password"),
    }
    let mut sub = Subscription::open(&info(&url("default:s3cret")), &channels)
        .await
        .expect("subscribed with the password");
    let client = redis::Client::open(url(":s3cret")).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("PUBLISH")
        .arg("c")
        .arg("hello")
        .query_async(&mut conn)
        .await
        .map(|_: i64| ())
        .expect("publish");
    let (_, payload) = next(&mut sub, Duration::from_secs(20)).await;
    assert_eq!(&payload[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_ends_the_subscription() {
    let redis = RedisServer::start();
    let mut sub = Subscription::open(&info(&redis.url()), &["c".to_owned()])
        .await
        .expect("subscribed");
    redis.signal("-STOP");
    let started = Instant::now();
    // Silence for IDLE, a PING, silence for IDLE again: an error, not a wait forever.
    let ended = tokio::time::timeout(IDLE * 2 + Duration::from_secs(20), sub.next()).await;
    redis.signal("-CONT");
    match ended {
        Ok(Err(RespError::Silent)) => {}
        Ok(other) => panic!("ended otherwise: {other:?}"),
        Err(_) => panic!("still waiting after {:?}", started.elapsed()),
    }
    assert!(started.elapsed() >= IDLE * 2, "gave up before pinging");
}
