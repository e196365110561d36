//! Hostile input (issue 2 item 5, docs/mqtt.md#reason-codes): a malformed packet, a bad UTF-8
//! topic, a wildcard in a PUBLISH topic, a remaining length over `--max-packet-size`, a second
//! CONNECT, or no CONNECT within 10 s ends that one connection — v5 clients read DISCONNECT
//! 0x81/0x82/0x95 first — and the broker and every other client carry on.

use std::time::{Duration, Instant};

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, RawPacket, Server};

type TestResult = Result<(), HarnessError>;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client connected before the attack, subscribed to `bystander/t`.
fn bystander(server: &Server) -> Result<RawClient, HarnessError> {
    let mut client = RawClient::connect(server.mqtt_addr(), Version::V5, "bystander")?;
    assert_eq!(client.subscribe(1, "bystander/t", 0)?, vec![0]);
    Ok(client)
}

/// The broker still runs, the bystander still answers pings and still receives a message that a
/// brand-new client publishes.
fn assert_others_unaffected(server: &mut Server, bystander: &mut RawClient) -> TestResult {
    assert!(server.is_running(), "broker died:\n{}", server.log_tail());
    bystander.ping()?;
    let mut publisher = RawClient::connect(server.mqtt_addr(), Version::V311, "publisher")?;
    publisher.send(&packets::publish(
        Version::V311,
        b"bystander/t",
        0,
        0,
        b"still here",
    ))?;
    let msg = bystander.expect(kind::PUBLISH, Duration::from_secs(5))?;
    assert_eq!(msg.publish_payload(Version::V5), Some(&b"still here"[..]));
    publisher.send(&packets::disconnect())?;
    Ok(())
}

/// Sends `bytes` on a fresh v5 connection (after a CONNECT when `connected`) and returns what the
/// server sent before closing it.
fn attack(
    server: &Server,
    version: Version,
    connected: bool,
    bytes: &[u8],
) -> Result<Vec<RawPacket>, HarnessError> {
    let mut attacker = if connected {
        RawClient::connect(server.mqtt_addr(), version, "attacker")?
    } else {
        RawClient::open(server.mqtt_addr(), version)?
    };
    // The server may close while we are still writing; that is what we are testing.
    let _ = attacker.send(bytes);
    attacker.wait_closed(CLOSE_TIMEOUT)
}

/// A v5 connection's last words: a DISCONNECT with one of `reasons` (or nothing, if the server
/// closed before anything but is then not v5-polite — rejected here).
fn assert_disconnect(packets: &[RawPacket], reasons: &[u8]) {
    let last = packets
        .last()
        .unwrap_or_else(|| panic!("no DISCONNECT before close"));
    assert_eq!(
        last.kind(),
        kind::DISCONNECT,
        "last packet before close: {last:?}"
    );
    assert!(
        reasons.contains(&last.reason()),
        "DISCONNECT reason 0x{:02x}",
        last.reason()
    );
}

#[test]
fn garbage_instead_of_connect_closes_only_that_connection() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    let seen = attack(
        &server,
        Version::V5,
        false,
        b"\xde\xad\xbe\xef not mqtt at all\r\n",
    )?;
    assert!(
        seen.iter().all(|p| p.kind() != kind::CONNACK),
        "CONNACK for garbage: {seen:?}"
    );
    // A PUBLISH before CONNECT is a protocol violation too.
    attack(
        &server,
        Version::V311,
        false,
        &packets::publish(Version::V311, b"a", 0, 0, b"x"),
    )?;
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn reserved_packet_type_after_connect() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    let seen = attack(&server, Version::V5, true, &[0x00, 0x00])?;
    assert_disconnect(&seen, &[0x81, 0x82]);
    attack(&server, Version::V311, true, &[0xF0, 0x00])?;
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn bad_utf8_topic() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    let bad = packets::publish(Version::V5, b"bystander/\xff\xfe", 0, 0, b"x");
    let seen = attack(&server, Version::V5, true, &bad)?;
    assert_disconnect(&seen, &[0x81, 0x82]);
    let bad = packets::publish(Version::V311, b"a/\xc3\x28", 1, 1, b"x");
    let seen = attack(&server, Version::V311, true, &bad)?;
    assert!(
        seen.iter().all(|p| p.kind() != kind::PUBACK),
        "acked a bad topic: {seen:?}"
    );
    // A U+0000 in a topic is forbidden as well.
    let nul = packets::publish(Version::V5, b"a\x00b", 0, 0, b"x");
    assert_disconnect(&attack(&server, Version::V5, true, &nul)?, &[0x81, 0x82]);
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn wildcard_in_publish_topic() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    for topic in [&b"bystander/+"[..], b"bystander/#", b"+"] {
        let p = packets::publish(Version::V5, topic, 1, 1, b"x");
        assert_disconnect(
            &attack(&server, Version::V5, true, &p)?,
            &[0x81, 0x82, 0x90],
        );
    }
    let p = packets::publish(Version::V311, b"bystander/#", 0, 0, b"x");
    attack(&server, Version::V311, true, &p)?;
    // Nothing reached the bystander through those topics.
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn remaining_length_over_max_packet_size() -> TestResult {
    let mut server = Server::start(&["--max-packet-size", "1024"])?;
    let mut others = bystander(&server)?;
    // Only the fixed header and a few bytes: the server must refuse from the header alone,
    // without waiting for (or buffering) the megabyte it announces.
    let mut header = vec![kind::PUBLISH << 4];
    packets::put_varint(&mut header, 1024 * 1024);
    header.extend_from_slice(&[0, 1, b'a', 0]);
    let started = Instant::now();
    let seen = attack(&server, Version::V5, true, &header)?;
    assert_disconnect(&seen, &[0x95]);
    assert!(started.elapsed() < CLOSE_TIMEOUT);
    attack(&server, Version::V311, true, &header)?;
    // Before CONNECT the limit applies too.
    let mut big_connect = vec![kind::CONNECT << 4];
    packets::put_varint(&mut big_connect, 10 * 1024 * 1024);
    attack(&server, Version::V5, false, &big_connect)?;
    // Just under the limit is fine.
    let mut ok = RawClient::connect(server.mqtt_addr(), Version::V5, "fits")?;
    ok.send(&packets::publish(
        Version::V5,
        b"bystander/t",
        1,
        9,
        &[b'y'; 900],
    ))?;
    assert_eq!(ok.expect(kind::PUBACK, CLOSE_TIMEOUT)?.reason(), 0);
    let msg = others.expect(kind::PUBLISH, CLOSE_TIMEOUT)?;
    assert_eq!(msg.publish_payload(Version::V5).map(<[u8]>::len), Some(900));
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn invalid_remaining_length_encoding() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    // Five bytes of remaining length: more than the four MQTT allows.
    let seen = attack(
        &server,
        Version::V5,
        true,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
    )?;
    assert_disconnect(&seen, &[0x81, 0x95]);
    attack(
        &server,
        Version::V311,
        false,
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    )?;
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn malformed_fixed_header_flags_and_second_connect() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    // PUBREL must have flags 0b0010; SUBSCRIBE too.
    assert_disconnect(
        &attack(&server, Version::V5, true, &[0x60, 0x02, 0x00, 0x01])?,
        &[0x81, 0x82],
    );
    let mut sub = packets::subscribe(Version::V5, 1, "a", 0);
    sub[0] = kind::SUBSCRIBE << 4;
    assert_disconnect(&attack(&server, Version::V5, true, &sub)?, &[0x81, 0x82]);
    // QoS 3 does not exist.
    let mut q3 = packets::publish(Version::V5, b"a", 0, 0, b"x");
    q3[0] |= 0x06;
    assert_disconnect(&attack(&server, Version::V5, true, &q3)?, &[0x81, 0x82]);
    // A second CONNECT is a protocol error.
    let again = packets::connect(Version::V5, "again", 60);
    assert_disconnect(&attack(&server, Version::V5, true, &again)?, &[0x82]);
    // A CONNECT with an unknown protocol level is refused (v3.1.1 code 0x01 or v5 0x84).
    let mut level9 = packets::connect(Version::V311, "nine", 60);
    level9[8] = 9;
    let seen = attack(&server, Version::V311, false, &level9)?;
    if let Some(connack) = seen.first() {
        assert_eq!(connack.kind(), kind::CONNACK);
        assert!([0x01, 0x84].contains(&connack.reason()), "{connack:?}");
    }
    assert_others_unaffected(&mut server, &mut others)
}

#[test]
fn no_connect_within_ten_seconds() -> TestResult {
    let mut server = Server::start(&[])?;
    let mut others = bystander(&server)?;
    let mut silent = RawClient::open(server.mqtt_addr(), Version::V5)?;
    let mut partial = RawClient::open(server.mqtt_addr(), Version::V5)?;
    let connect = packets::connect(Version::V5, "slowpoke", 60);
    partial.send(&connect[..connect.len() / 2])?;
    let opened = Instant::now();
    silent.wait_closed(Duration::from_secs(13))?;
    partial.wait_closed(Duration::from_secs(13).saturating_sub(opened.elapsed()))?;
    assert_others_unaffected(&mut server, &mut others)
}

/// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes_after_connect_never_take_the_broker_down() -> TestResult {
    let mut server = Server::start(&["--max-packet-size", "65536"])?;
    let mut others = bystander(&server)?;
    for seed in 1..=60u64 {
        let version = if seed % 2 == 0 {
            Version::V5
        } else {
            Version::V311
        };
        let mut attacker = RawClient::connect(server.mqtt_addr(), version, &format!("fuzz{seed}"))?;
        let _ = attacker.send(&noise(seed, 512 + (seed as usize * 37) % 2048));
        // Either the server closes the connection or it is waiting for more bytes; both are
        // fine, as long as nobody else notices.
        let _ = attacker.read_packet(Duration::from_millis(50));
    }
    assert_others_unaffected(&mut server, &mut others)
}
