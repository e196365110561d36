//! [`super`]'s reader on bytes (a reply split anywhere, every reply kind, what it refuses) and
//! against a real redis-server: messages arrive whole (binary, 1 MiB), `AUTH` with a password,
//! a wrong password refused, a Redis that stops answering noticed.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{IDLE, MAX_BULK, MAX_LINE, Reply, SubscriberError, Subscription, parse};
use crate::persist::test_redis::RedisServer;

/// Every reply in `bytes`, fed one byte at a time: none may come out early or twice.
fn parse_bytewise(bytes: &[u8]) -> Vec<Reply> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(r) = parse(&mut buf).expect("valid RESP") {
            out.push(r);
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

fn message(channel: &str, payload: &[u8]) -> Reply {
    Reply::Message(
        Bytes::copy_from_slice(channel.as_bytes()),
        Bytes::copy_from_slice(payload),
    )
}

#[test]
fn replies_come_out_whole_however_the_bytes_arrive() {
    let stream = b"+OK\r\n\
        *3\r\n$9\r\nsubscribe\r\n$13\r\nfleetmq:out:0\r\n:1\r\n\
        *3\r\n$7\r\nmessage\r\n$13\r\nfleetmq:out:0\r\n$6\r\na\r\nb\x00c\r\n\
        *2\r\n$4\r\npong\r\n$0\r\n\r\n\
        *3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$0\r\n\r\n\
        -NOPERM no permissions\r\n\
        :7\r\n$-1\r\n*-1\r\n$3\r\nabc\r\n";
    assert_eq!(
        parse_bytewise(stream),
        vec![
            Reply::Other,
            Reply::Subscribed,
            message("fleetmq:out:0", b"a\r\nb\x00c"),
            Reply::Other,
            message("x", b""),
            Reply::Error("NOPERM no permissions".into()),
            Reply::Other,
            Reply::Other,
            Reply::Other,
            Reply::Other,
        ]
    );
}

#[test]
fn several_replies_in_one_read_come_out_in_order() {
    let mut buf = BytesMut::from(
        &b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\n10\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\n11\r\n*3\r\n$7\r\nmess"[..],
    );
    assert_eq!(parse(&mut buf).expect("ok"), Some(message("a", b"10")));
    assert_eq!(parse(&mut buf).expect("ok"), Some(message("a", b"11")));
    assert_eq!(parse(&mut buf).expect("ok"), None);
    assert_eq!(&buf[..], b"*3\r\n$7\r\nmess", "the incomplete reply stays");
}

fn refused(bytes: &[u8]) -> SubscriberError {
    let mut buf = BytesMut::from(bytes);
    match parse(&mut buf) {
        Err(e) => e,
        Ok(r) => panic!("{bytes:?} parsed as {r:?}"),
    }
}

#[test]
fn what_is_not_resp2_or_too_long_is_refused_before_it_is_buffered() {
    // A bulk string over the limit is refused at its header, before its bytes are read.
    let header = format!("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n${}\r\n", MAX_BULK + 1);
    assert!(matches!(
        refused(header.as_bytes()),
        SubscriberError::Protocol(_)
    ));
    // A header line that never ends.
    assert!(matches!(
        refused(&vec![b'-'; MAX_LINE]),
        SubscriberError::Protocol(_)
    ));
    for bad in [
        &b"?what\r\n"[..],
        b"*5\r\n",
        b"*x\r\n",
        b"\r\n",
        b"*3\r\n$7\r\nmessageXX",
        b"*1\r\n*1\r\n",
        b"*3\r\n$7\r\nmessage\r\n:1\r\n:2\r\n",
    ] {
        assert!(
            matches!(refused(bad), SubscriberError::Protocol(_)),
            "{bad:?}"
        );
    }
}

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
    assert!(sub.buffered() == 0, "nothing left half-read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_sent_and_a_wrong_one_refused() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = |auth: &str| format!("redis://{auth}@127.0.0.1:{}/", redis.port);
    let channels = vec!["c".to_owned()];
    match Subscription::open(&info(&url(":wrong")), &channels).await {
        Err(SubscriberError::Refused(e)) => assert!(e.contains("WRONGPASS"), "{e}"),
        Err(e) => panic!("refused with another error: {e}"),
        Ok(_) => panic!("a wrong password subscribed"),
    }
    match Subscription::open(
        &info(&format!("redis://127.0.0.1:{}/", redis.port)),
        &channels,
    )
    .await
    {
        Err(SubscriberError::Refused(e)) => assert!(e.contains("NOAUTH"), "{e}"),
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
        Ok(Err(SubscriberError::Silent)) => {}
        Ok(other) => panic!("ended otherwise: {other:?}"),
        Err(_) => panic!("still waiting after {:?}", started.elapsed()),
    }
    assert!(started.elapsed() >= IDLE * 2, "gave up before pinging");
}
