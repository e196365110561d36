//! The HTTP server loop's connection cap: at the cap a new client is not served (it waits in the
//! kernel's accept queue) until an open connection closes, and is then served normally.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n";

/// Sends one request on `stream` and reads until the response's body `ok` has arrived.
async fn request(stream: &mut TcpStream) -> String {
    stream.write_all(REQUEST).await.expect("write request");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"ok") {
        let n = stream.read(&mut buf).await.expect("read response");
        assert!(n > 0, "connection closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_client_past_the_cap_is_served_when_a_connection_closes() {
    let app = Router::new().route("/ok", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(fleetmq_bridge::serve(
        listener,
        app,
        std::future::pending(),
        2,
    ));

    // Two keep-alive connections, each served once and left open: the cap is reached.
    let mut first = TcpStream::connect(addr).await.expect("connect 1");
    let mut second = TcpStream::connect(addr).await.expect("connect 2");
    assert!(request(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(request(&mut second).await.starts_with("HTTP/1.1 200"));

    // The third connects (the kernel's queue) but is not served while both are open.
    let mut third = TcpStream::connect(addr).await.expect("connect 3");
    third.write_all(REQUEST).await.expect("write request 3");
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a connection past the cap was served: {early:?}"
    );

    // One closes: the third is accepted and its request answered.
    drop(first);
    let mut got = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while !got.ends_with(b"ok") {
            let n = third.read(&mut buf).await.expect("read response 3");
            assert!(n > 0, "third connection closed before its response");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answered.is_ok(), "the waiting client was never served");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));

    // The second connection is still served: the cap slows no one already in.
    assert!(request(&mut second).await.starts_with("HTTP/1.1 200"));
}
