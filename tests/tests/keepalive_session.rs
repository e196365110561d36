//! Keep-alive and session expiry as a black box (STYLE "Tests"; docs/mqtt.md#keep-alive): a silent
//! client is closed after one and a half keep-alive periods (v5: DISCONNECT 0x8D first), a client
//! that pings stays; a session with an expiry interval survives a reconnect within it and is gone
//! after it; Session Expiry 0 ends the session with the connection.

use std::thread;
use std::time::{Duration, Instant};

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, Server, wait_until};

type TestResult = Result<(), HarnessError>;

#[test]
fn silent_client_closed_after_one_and_a_half_keep_alives() -> TestResult {
    let server = Server::start(&[])?;
    let (mut v5, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V5,
        &packets::connect(Version::V5, "silent-v5", 1),
    )?;
    let (mut v311, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V311,
        &packets::connect(Version::V311, "silent-311", 1),
    )?;
    let started = Instant::now();
    let last_words = v5.wait_closed(Duration::from_secs(6))?;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after only {waited:?}"
    );
    let disconnect = last_words.last().ok_or_else(|| {
        HarnessError::BadPacket("no DISCONNECT before the keep-alive close".into())
    })?;
    assert_eq!(
        (disconnect.kind(), disconnect.reason()),
        (kind::DISCONNECT, 0x8D)
    );
    v311.wait_closed(Duration::from_secs(6))?;
    Ok(())
}

#[test]
fn pinging_client_stays_connected() -> TestResult {
    let server = Server::start(&[])?;
    let (mut client, _) = RawClient::connect_with(
        server.mqtt_addr(),
        Version::V5,
        &packets::connect(Version::V5, "pinger", 1),
    )?;
    // Three and a half keep-alive periods, a PINGREQ every half period.
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        client.ping()?;
        let next = Instant::now() + Duration::from_millis(500);
        // Pacing the pings is the behaviour under test, not synchronisation.
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    client.ping()
}

fn resume(server: &Server, id: &str, expiry: u32) -> Result<(RawClient, bool), HarnessError> {
    let connect = packets::connect_session(Version::V5, id, 60, false, Some(expiry));
    let (client, connack) = RawClient::connect_with(server.mqtt_addr(), Version::V5, &connect)?;
    Ok((client, connack.session_present()))
}

#[test]
fn session_survives_within_expiry_and_is_gone_after() -> TestResult {
    let server = Server::start(&[])?;
    let (mut first, present) = resume(&server, "expiring", 2)?;
    assert!(!present);
    first.subscribe(1, "expiring/t", 1)?;
    first.send(&packets::disconnect())?;
    first.wait_closed(Duration::from_secs(5))?;

    // Within the interval: the session and its subscription are there.
    let (mut second, present) = resume(&server, "expiring", 2)?;
    assert!(present, "session gone within its expiry interval");
    let mut publisher = RawClient::connect(server.mqtt_addr(), Version::V311, "pub")?;
    publisher.send(&packets::publish(
        Version::V311,
        b"expiring/t",
        1,
        1,
        b"kept",
    ))?;
    publisher.expect(kind::PUBACK, Duration::from_secs(5))?;
    let msg = second.expect(kind::PUBLISH, Duration::from_secs(5))?;
    assert_eq!(msg.publish_payload(Version::V5), Some(&b"kept"[..]));
    if let Some(pkid) = msg.publish_pkid() {
        second.send(&packets::puback(pkid))?;
    }
    second.send(&packets::disconnect())?;
    second.wait_closed(Duration::from_secs(5))?;

    // After the interval: gone.
    let closed = Instant::now();
    wait_until(Duration::from_secs(5), "the session expiry to pass", || {
        (closed.elapsed() > Duration::from_millis(3000)).then_some(())
    })?;
    let (_third, present) = resume(&server, "expiring", 0)?;
    assert!(!present, "session outlived its 2 s expiry");
    Ok(())
}

#[test]
fn session_expiry_zero_ends_with_the_connection() -> TestResult {
    let server = Server::start(&[])?;
    let (mut first, _) = resume(&server, "short-lived", 0)?;
    first.subscribe(1, "short/t", 1)?;
    first.send(&packets::disconnect())?;
    first.wait_closed(Duration::from_secs(5))?;
    let (_again, present) = resume(&server, "short-lived", 0)?;
    assert!(!present);
    Ok(())
}
