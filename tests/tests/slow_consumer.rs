//! Slow-consumer isolation (issue 2 item 6, docs/mqtt.md#sessions-and-queues and STYLE "the router
//! never waits on a slow client"): a subscriber that stops reading must not slow any other client
//! nor grow the broker's memory past its bounded queue. QoS 0 to it is dropped; QoS 1 waits in its
//! bounded queue while the publisher still gets its PUBACKs. The same holds for a subscriber over
//! MQTT over WebSocket (`/mqtt`), whose connection also has the WebSocket layer's buffers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, Server, wait_until};

type TestResult = Result<(), HarnessError>;

/// Payload size: 10 KiB, so 10,240 messages carry 100 MiB.
const PAYLOAD: usize = 10 * 1024;
/// The fast subscriber may lag the publisher by at most this many messages.
const WINDOW: usize = 256;
/// No single step may take longer than this: "promptly".
const STEP: Duration = Duration::from_secs(10);
/// Generous ceiling on the broker's RSS after 100 MiB passed a stalled subscriber.
const RSS_CEILING: u64 = 256 * 1024 * 1024;
/// Ceiling on the broker's RSS growth while 100 MiB pass a stalled QoS 0 subscriber: well
/// under the 100 MiB a broker buffering everything for it would need (its bounded queue is at
/// most `--max-queued` 1,000 × 10 KiB).
const RSS_GROWTH_CEILING: u64 = 64 * 1024 * 1024;

/// A subscriber that reads (and acks) everything on a thread and counts it.
struct Counter {
    received: Arc<AtomicUsize>,
    bytes: Arc<AtomicU64>,
    handle: thread::JoinHandle<Result<(), HarnessError>>,
}

fn fast_subscriber(
    server: &Server,
    topic: &str,
    qos: u8,
    expected: usize,
) -> Result<Counter, HarnessError> {
    let mut client = RawClient::connect(server.mqtt_addr(), Version::V5, "fast")?;
    assert_eq!(client.subscribe(1, topic, qos)?, vec![qos]);
    let received = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let (r, b) = (Arc::clone(&received), Arc::clone(&bytes));
    let handle = thread::spawn(move || {
        while r.load(Ordering::SeqCst) < expected {
            let Some(p) = client.read_packet(Duration::from_secs(30))? else {
                return Err(HarnessError::BadPacket(
                    "fast subscriber disconnected".into(),
                ));
            };
            if p.kind() != kind::PUBLISH {
                continue;
            }
            if let Some(pkid) = p.publish_pkid() {
                client.send(&packets::puback(pkid))?;
            }
            let len = p.publish_payload(Version::V5).map_or(0, <[u8]>::len);
            b.fetch_add(len as u64, Ordering::SeqCst);
            r.fetch_add(1, Ordering::SeqCst);
        }
        client.send(&packets::disconnect())?;
        Ok(())
    });
    Ok(Counter {
        received,
        bytes,
        handle,
    })
}

/// A subscriber that subscribes and then never reads its socket again.
fn stalled_subscriber(server: &Server, topic: &str, qos: u8) -> Result<RawClient, HarnessError> {
    let mut client = RawClient::connect(server.mqtt_addr(), Version::V5, "stalled")?;
    assert_eq!(client.subscribe(1, topic, qos)?, vec![qos]);
    Ok(client)
}

/// Writes one masked binary WebSocket frame (the mask key is zero, so the payload is unchanged).
fn ws_frame(stream: &mut TcpStream, payload: &[u8]) -> Result<(), HarnessError> {
    let mut frame = vec![0x82];
    match u16::try_from(payload.len()) {
        Ok(n) if n < 126 => frame.push(0x80 | n as u8),
        Ok(n) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => return Err(HarnessError::BadPacket("frame too large".into())),
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    Ok(())
}

/// A subscriber over `/mqtt` (MQTT over WebSocket) that waits for its SUBACK and then never
/// reads its socket again.
fn stalled_ws_subscriber(server: &Server, topic: &str) -> Result<TcpStream, HarnessError> {
    let mut stream = TcpStream::connect(server.http_addr())?;
    stream.set_read_timeout(Some(STEP))?;
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        server.http_addr()
    );
    stream.write_all(request.as_bytes())?;
    ws_frame(&mut stream, &packets::connect(Version::V5, "stalled-ws", 0))?;
    ws_frame(&mut stream, &packets::subscribe(Version::V5, 1, topic, 0))?;
    // Everything read so far: the HTTP response, then unmasked server frames (2-byte headers,
    // as CONNACK and SUBACK are short) whose payloads hold the MQTT packets.
    let mut seen = Vec::new();
    let deadline = Instant::now() + STEP;
    let mut buf = [0u8; 4096];
    loop {
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout(STEP, "the /mqtt SUBACK".into()));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(HarnessError::BadPacket("/mqtt closed before SUBACK".into()));
        }
        seen.extend_from_slice(&buf[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if !seen.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&seen[..end]).into_owned();
            return Err(HarnessError::BadPacket(format!("upgrade refused: {head}")));
        }
        let mut frames = &seen[end + 4..];
        while let [_, len, rest @ ..] = frames {
            let len = usize::from(*len & 0x7f);
            let Some(payload) = rest.get(..len) else {
                break;
            };
            // One frame may carry several MQTT packets (CONNACK and SUBACK written together).
            if holds_suback(payload) {
                return Ok(stream);
            }
            frames = &rest[len..];
        }
    }
}

/// Whether the MQTT packets of one WebSocket frame's payload include a SUBACK.
fn holds_suback(mut packets: &[u8]) -> bool {
    while let [first, rest @ ..] = packets {
        if first >> 4 == kind::SUBACK {
            return true;
        }
        // Remaining length: a variable byte integer of at most 4 bytes.
        let (mut len, mut used) = (0usize, 0usize);
        for (i, b) in rest.iter().take(4).enumerate() {
            len |= usize::from(b & 0x7f) << (7 * i);
            used = i + 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let Some(next) = rest.get(used + len..) else {
            return false;
        };
        packets = next;
    }
    false
}

#[test]
fn stalled_qos0_subscriber_does_not_slow_others_or_grow_memory() -> TestResult {
    let server = Server::start(&[])?;
    let _stalled = stalled_subscriber(&server, "load/#", 0)?;
    qos0_load_past_a_stalled_subscriber(&server)
}

#[test]
fn stalled_mqtt_over_websocket_subscriber_does_not_slow_others_or_grow_memory() -> TestResult {
    let server = Server::start(&[])?;
    let _stalled = stalled_ws_subscriber(&server, "load/#")?;
    qos0_load_past_a_stalled_subscriber(&server)
}

/// Sends 100 MiB of QoS 0 to `load/bus` paced on a fast subscriber of `load/#`, which must get
/// every message, while the broker's RSS stays under the ceiling.
fn qos0_load_past_a_stalled_subscriber(server: &Server) -> TestResult {
    let total = 100 * 1024 * 1024 / PAYLOAD;
    let fast = fast_subscriber(server, "load/#", 0, total)?;
    let mut publisher = RawClient::connect(server.mqtt_addr(), Version::V5, "publisher")?;
    let payload = vec![b'x'; PAYLOAD];
    let message = packets::publish(Version::V5, b"load/bus", 0, 0, &payload);
    let started = Instant::now();
    let rss_before = server.rss_bytes()?;
    let mut peak_rss = rss_before;
    for sent in 1..=total {
        publisher.send(&message)?;
        // Pace on the fast subscriber (never on the stalled one) so QoS 0 to the fast one has
        // no reason to be dropped: then every message must arrive.
        if sent % 64 == 0 || sent == total {
            let need = sent.saturating_sub(WINDOW);
            wait_until(STEP, "the fast subscriber to keep up", || {
                (fast.received.load(Ordering::SeqCst) >= need).then_some(())
            })?;
            if sent % 1024 == 0 {
                peak_rss = peak_rss.max(server.rss_bytes()?);
            }
        }
    }
    wait_until(STEP, "the fast subscriber to get every message", || {
        (fast.received.load(Ordering::SeqCst) >= total).then_some(())
    })?;
    let elapsed = started.elapsed();
    peak_rss = peak_rss.max(server.rss_bytes()?);
    assert_eq!(fast.bytes.load(Ordering::SeqCst), (total * PAYLOAD) as u64);
    assert!(
        peak_rss < RSS_CEILING,
        "broker RSS reached {} MiB with a stalled subscriber",
        peak_rss / (1024 * 1024)
    );
    assert!(
        peak_rss.saturating_sub(rss_before) < RSS_GROWTH_CEILING,
        "broker RSS grew from {} to {} MiB with a stalled subscriber",
        rss_before / (1024 * 1024),
        peak_rss / (1024 * 1024)
    );
    eprintln!(
        "100 MiB through in {:.1} s, peak broker RSS {} MiB",
        elapsed.as_secs_f64(),
        peak_rss / (1024 * 1024)
    );
    fast.handle
        .join()
        .map_err(|_| HarnessError::BadPacket("reader panicked".into()))??;
    // The publisher's connection is healthy too.
    publisher.ping()
}

#[test]
fn stalled_qos1_subscriber_does_not_block_publisher_acks() -> TestResult {
    let server = Server::start(&["--max-queued", "100"])?;
    let total = 3000;
    let _stalled = stalled_subscriber(&server, "q1/#", 1)?;
    let fast = fast_subscriber(&server, "q1/#", 1, total)?;
    let mut publisher = RawClient::connect(server.mqtt_addr(), Version::V5, "publisher")?;
    let payload = vec![b'y'; PAYLOAD];
    let mut in_flight = 0usize;
    for i in 0..total {
        let pkid = u16::try_from(i % 60_000 + 1).unwrap_or(1);
        publisher.send(&packets::publish(Version::V5, b"q1/bus", 1, pkid, &payload))?;
        in_flight += 1;
        // Keep at most 32 unacknowledged: every PUBACK must come back promptly.
        while in_flight >= 32 {
            let ack = publisher.expect(kind::PUBACK, STEP)?;
            assert_eq!(ack.reason(), 0, "PUBACK {ack:?}");
            in_flight -= 1;
        }
        // Pace the publisher to the fast subscriber (never more than 64 ahead of it, below
        // --max-queued), so a loaded test machine cannot make the *fast* subscriber's bounded
        // queue overflow; the stalled one overflows regardless and must not slow anyone.
        if i % 32 == 31 {
            wait_until(STEP, "the fast subscriber to keep up", || {
                (fast.received.load(Ordering::SeqCst) + 64 >= i).then_some(())
            })?;
        }
    }
    while in_flight > 0 {
        publisher.expect(kind::PUBACK, STEP)?;
        in_flight -= 1;
    }
    wait_until(
        STEP,
        "the fast QoS 1 subscriber to get every message",
        || (fast.received.load(Ordering::SeqCst) >= total).then_some(()),
    )?;
    let rss = server.rss_bytes()?;
    assert!(rss < RSS_CEILING, "broker RSS {} MiB", rss / (1024 * 1024));
    fast.handle
        .join()
        .map_err(|_| HarnessError::BadPacket("reader panicked".into()))??;
    Ok(())
}
