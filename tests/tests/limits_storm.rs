//! Connection storms (issue 6, docs/security.md#abuse-limits): thousands of reconnects within about
//! a second must not stall the accept loop nor starve connected clients. A subscriber already
//! connected keeps receiving a steady QoS 1 stream during the storm: every message arrives, in
//! order, with no silence longer than a generous bound (not a timing benchmark). A second test puts
//! the storm against `--max-connections`: the broker never holds more than the limit and the
//! clients it already had keep working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fleetmq_tests::packets::{self, Version, kind};
use fleetmq_tests::{HarnessError, RawClient, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), HarnessError>;
/// Sequence numbers received, with when each arrived.
type Arrivals = Vec<(u64, Instant)>;
/// A helper thread's handle.
type Worker<T> = thread::JoinHandle<Result<T, HarnessError>>;

/// Reconnects in the storm.
const STORM: usize = 2_000;
/// Concurrent clients making them (each reconnects `STORM / WORKERS` times).
const WORKERS: usize = 200;
/// Interval of the steady stream.
const TICK: Duration = Duration::from_millis(5);
/// Longest silence the subscriber may see while the storm runs (generous: debug build, 2 cores).
const MAX_GAP: Duration = Duration::from_secs(5);
/// Deadline for any single step.
const STEP: Duration = Duration::from_secs(30);

/// What one connect of the storm got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// CONNACK with this reason code.
    ConnAck(u8),
    /// Closed (or reset) without a CONNACK: refused before MQTT.
    Closed,
}

/// One storm connect: TCP connect, CONNECT, wait for CONNACK or close, then drop the socket
/// abruptly (no DISCONNECT, as a flapping device does).
async fn storm_connect(addr: SocketAddr, id: String) -> Result<Outcome, HarnessError> {
    let mut stream = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| HarnessError::Timeout(STEP, "storm connect".into()))??;
    if stream
        .write_all(&packets::connect(Version::V5, &id, 30))
        .await
        .is_err()
    {
        return Ok(Outcome::Closed);
    }
    let mut buf = [0u8; 64];
    let mut have = 0;
    loop {
        let read = tokio::time::timeout(STEP, stream.read(&mut buf[have..]))
            .await
            .map_err(|_| HarnessError::Timeout(STEP, format!("CONNACK for {id}")))?;
        match read {
            Ok(0) | Err(_) => return Ok(Outcome::Closed),
            Ok(n) => have += n,
        }
        // Fixed header (0x20, length) + flags + reason code.
        if have >= 4 {
            if buf[0] >> 4 != kind::CONNACK {
                return Err(HarnessError::BadPacket(format!(
                    "not a CONNACK: {:02x?}",
                    &buf[..have]
                )));
            }
            return Ok(Outcome::ConnAck(buf[3]));
        }
        if have == buf.len() {
            return Err(HarnessError::BadPacket("CONNACK too long".into()));
        }
    }
}

/// Runs the storm on its own runtime; returns every outcome and how long it took.
fn storm(addr: SocketAddr, tag: &str) -> Result<(Vec<Outcome>, Duration), HarnessError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tag = tag.to_string();
    rt.block_on(async move {
        let started = Instant::now();
        let mut workers = Vec::with_capacity(WORKERS);
        for w in 0..WORKERS {
            let tag = tag.clone();
            workers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for r in 0..STORM / WORKERS {
                    out.push(storm_connect(addr, format!("{tag}-{w}-{r}")).await?);
                }
                Ok::<_, HarnessError>(out)
            }));
        }
        let mut outcomes = Vec::with_capacity(STORM);
        for w in workers {
            let done = w
                .await
                .map_err(|e| HarnessError::BadPacket(format!("storm task: {e}")))??;
            outcomes.extend(done);
        }
        Ok((outcomes, started.elapsed()))
    })
}

/// A subscriber on a thread: records (sequence number, arrival) of each message until the
/// publisher has `finished` and all `count` messages are in.
fn subscriber(
    addr: SocketAddr,
    topic: &str,
    count: Arc<AtomicUsize>,
    finished: Arc<AtomicBool>,
) -> Result<Worker<Arrivals>, HarnessError> {
    let mut client = RawClient::connect(addr, Version::V5, "storm-subscriber")?;
    assert_eq!(client.subscribe(1, topic, 1)?, vec![1]);
    Ok(thread::spawn(move || {
        let mut seen = Vec::new();
        let mut last = Instant::now();
        while !(finished.load(Ordering::SeqCst) && seen.len() >= count.load(Ordering::SeqCst)) {
            let p = match client.read_packet(Duration::from_millis(200)) {
                Ok(Some(p)) => p,
                Ok(None) => return Err(HarnessError::BadPacket("subscriber disconnected".into())),
                Err(HarnessError::Timeout(..)) if last.elapsed() < STEP => continue,
                Err(e) => return Err(e),
            };
            if p.kind() != kind::PUBLISH {
                continue;
            }
            if let Some(pkid) = p.publish_pkid() {
                client.send(&packets::puback(pkid))?;
            }
            let payload = p.publish_payload(Version::V5).unwrap_or_default();
            let seq = std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| HarnessError::BadPacket(format!("payload {payload:?}")))?;
            last = Instant::now();
            seen.push((seq, last));
        }
        Ok(seen)
    }))
}

/// A publisher on a thread: QoS 1 every `TICK`, waiting for each PUBACK, until `stop`.
fn publisher(
    addr: SocketAddr,
    topic: &str,
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
) -> Result<Worker<()>, HarnessError> {
    let mut client = RawClient::connect(addr, Version::V5, "storm-publisher")?;
    let topic = topic.to_string();
    Ok(thread::spawn(move || {
        // However the loop ends, the subscriber stops waiting for more.
        struct Finish(Arc<AtomicBool>);
        impl Drop for Finish {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _finish = Finish(finished);
        let mut seq: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let pkid = u16::try_from(seq % 60_000 + 1).unwrap_or(1);
            let payload = seq.to_string();
            client.send(&packets::publish(
                Version::V5,
                topic.as_bytes(),
                1,
                pkid,
                payload.as_bytes(),
            ))?;
            let ack = client.expect(kind::PUBACK, STEP)?;
            if ack.reason() >= 0x80 {
                return Err(HarnessError::BadPacket(format!("PUBACK {ack:?}")));
            }
            seq += 1;
            sent.store(usize::try_from(seq).unwrap_or(usize::MAX), Ordering::SeqCst);
            thread::sleep(TICK);
        }
        Ok(())
    }))
}

/// Checks the stream: `0..sent` in order, and no silence longer than `MAX_GAP`.
fn check_stream(seen: &[(u64, Instant)], sent: usize) {
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (0..sent as u64).collect();
    assert_eq!(
        seqs.len(),
        expected.len(),
        "every message arrives exactly once"
    );
    assert!(seqs == expected, "messages arrive in order");
    let worst = seen
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    assert!(
        worst < MAX_GAP,
        "the subscriber went {worst:?} without a message"
    );
}

/// Runs the steady stream around `during` and checks it.
fn with_steady_stream<T>(
    server: &Server,
    during: impl FnOnce() -> Result<T, HarnessError>,
) -> Result<T, HarnessError> {
    let topic = "storm/steady";
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let sub = subscriber(
        server.mqtt_addr(),
        topic,
        Arc::clone(&sent),
        Arc::clone(&finished),
    )?;
    let publ = publisher(
        server.mqtt_addr(),
        topic,
        Arc::clone(&sent),
        Arc::clone(&stop),
        finished,
    )?;
    // The stream is flowing before the storm starts.
    fleetmq_tests::wait_until(STEP, "the stream to start", || {
        (sent.load(Ordering::SeqCst) >= 20).then_some(())
    })?;
    let result = during();
    stop.store(true, Ordering::SeqCst);
    let published = publ
        .join()
        .map_err(|_| HarnessError::BadPacket("publisher panicked".into()));
    let seen = sub
        .join()
        .map_err(|_| HarnessError::BadPacket("subscriber panicked".into()));
    published??;
    let seen = seen??;
    check_stream(&seen, sent.load(Ordering::SeqCst));
    result
}

#[test]
fn reconnect_storm_does_not_starve_a_connected_subscriber() -> TestResult {
    let server = Server::start(&[])?;
    let (outcomes, took) = with_steady_stream(&server, || storm(server.mqtt_addr(), "storm"))?;
    let accepted = outcomes
        .iter()
        .filter(|o| **o == Outcome::ConnAck(0))
        .count();
    assert_eq!(
        accepted,
        STORM,
        "every storm connect is accepted (took {took:?}): {:?}",
        outcomes.iter().find(|o| **o != Outcome::ConnAck(0))
    );
    eprintln!("{STORM} reconnects in {took:?}");
    Ok(())
}

#[test]
fn storm_against_max_connections_keeps_existing_clients() -> TestResult {
    // Subscriber and publisher hold 2 of the 50 slots; the storm gets the rest at most.
    let server = Server::start(&["--max-connections", "50"])?;
    let (outcomes, _) = with_steady_stream(&server, || {
        // Hold 48 connections open so the storm finds the broker full.
        let holders: Vec<RawClient> = (0..48)
            .map(|i| RawClient::connect(server.mqtt_addr(), Version::V5, &format!("holder-{i}")))
            .collect::<Result<_, _>>()?;
        let outcomes = storm(server.mqtt_addr(), "full")?;
        drop(holders);
        Ok(outcomes)
    })?;
    let accepted = outcomes
        .iter()
        .filter(|o| **o == Outcome::ConnAck(0))
        .count();
    assert_eq!(
        accepted, 0,
        "no connection beyond --max-connections is accepted"
    );
    // Room again once the holders left.
    fleetmq_tests::wait_until(STEP, "a free slot", || {
        RawClient::connect(server.mqtt_addr(), Version::V5, "after").ok()
    })?;
    Ok(())
}
