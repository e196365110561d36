//! The library API other crates embed (`fleetmq::Broker::bind` on port 0, `Broker::run` with a
//! shutdown future): a broker started in-process serves 3.1.1 and 5.0 clients, and completing
//! the shutdown future sends v5 clients DISCONNECT 0x8B and makes `run` return `Ok`.

use std::net::SocketAddr;
use std::time::Duration;

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_run_and_graceful_shutdown() -> Result<(), Box<dyn std::error::Error>> {
    let config = fleetmq::Config {
        mqtt: loopback(),
        http: loopback(),
        ..Default::default()
    };
    let broker = fleetmq::Broker::bind(config).await?;
    let addr = broker.mqtt_addr();
    assert_ne!(addr.port(), 0, "bind reports the real port");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(broker.run(async move {
        let _ = stop_rx.await;
    }));

    // Blocking raw clients on a blocking thread: a v5 subscriber and a 3.1.1 publisher.
    let clients = tokio::task::spawn_blocking(move || -> Result<RawClient, HarnessError> {
        let mut sub = RawClient::connect(addr, Version::V5, "in-process-sub")?;
        assert_eq!(sub.subscribe(1, "inproc/+", 1)?, vec![1]);
        let mut publisher = RawClient::connect(addr, Version::V311, "in-process-pub")?;
        publisher.send(&packets::publish(
            Version::V311,
            b"inproc/a",
            1,
            1,
            b"hello",
        ))?;
        publisher.expect(kind::PUBACK, Duration::from_secs(5))?;
        let msg = sub.expect(kind::PUBLISH, Duration::from_secs(5))?;
        assert_eq!(msg.publish_payload(Version::V5), Some(&b"hello"[..]));
        if let Some(pkid) = msg.publish_pkid() {
            sub.send(&packets::puback(pkid))?;
        }
        Ok(sub)
    })
    .await??;

    let _ = stop_tx.send(());
    let mut sub = clients;
    let last_words =
        tokio::task::spawn_blocking(move || sub.wait_closed(Duration::from_secs(10))).await??;
    let disconnect = last_words
        .iter()
        .find(|p| p.kind() == kind::DISCONNECT)
        .ok_or("no DISCONNECT on shutdown")?;
    assert_eq!(disconnect.reason(), 0x8B, "server shutting down");
    tokio::time::timeout(Duration::from_secs(10), served).await???;
    Ok(())
}

#[tokio::test]
async fn bind_reports_a_port_in_use() -> Result<(), Box<dyn std::error::Error>> {
    let taken = std::net::TcpListener::bind(loopback())?;
    let config = fleetmq::Config {
        mqtt: taken.local_addr()?,
        http: loopback(),
        ..Default::default()
    };
    let result = fleetmq::Broker::bind(config).await;
    assert!(result.is_err(), "binding a port in use must fail");
    Ok(())
}
