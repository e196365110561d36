//! TLS handshakes never stall the listener (issue 6; STYLE "what not to imitate": rumqttd awaits
//! the TLS handshake inside its accept loop). Hundreds of clients open the `--mqtts` port and
//! never finish (or never start) their handshake; meanwhile a real TLS client (`mosquitto_pub
//! --cafile` with `fleetmq certs` certificates) connects and publishes at once, and the stalled
//! sockets are closed by the broker's handshake timeout instead of being held for ever.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleetmq_tests::packets::{Version, kind};
use fleetmq_tests::{HarnessError, RawClient, Server, fleetmq_bin, wait_until};

type TestResult = Result<(), HarnessError>;

/// Sockets that open the TLS port and stall.
const STALLED: usize = 300;
/// The broker's handshake timeout is 10 s; allow for a slow machine.
const CLOSE_DEADLINE: Duration = Duration::from_secs(40);

/// A port that was free a moment ago (`--mqtts` gets its own; the harness reads only mqtt/http).
fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn certs(dir: &Path) -> Result<(), HarnessError> {
    let out = Command::new(fleetmq_bin()?)
        .args(["certs", "--out"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(HarnessError::Start(
            String::from_utf8_lossy(&out.stderr).into(),
        ));
    }
    Ok(())
}

fn temp_dir(tag: &str) -> Result<PathBuf, HarnessError> {
    let dir = std::env::temp_dir().join(format!("fleetmq-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whether the server has closed `s` (EOF or reset) without sending anything we must answer.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn stalled_handshakes_do_not_block_real_tls_clients() -> TestResult {
    let dir = temp_dir("tls-stall")?;
    certs(&dir)?;
    let port = free_port()?;
    let mqtts = format!("127.0.0.1:{port}");
    let (cert, key, ca) = (
        dir.join("server.pem"),
        dir.join("server-key.pem"),
        dir.join("ca.pem"),
    );
    let server = Server::start(&[
        "--mqtts",
        &mqtts,
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
    ])?;
    let addr: SocketAddr = mqtts
        .parse()
        .map_err(|_| HarnessError::Start(mqtts.clone()))?;

    // Half say nothing; half send the first bytes of a TLS record and stop.
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        if i % 2 == 1 {
            s.write_all(&[0x16, 0x03, 0x01, 0x02])?;
        }
        stalled.push(s);
    }
    let started = Instant::now();

    // A real TLS client is served while they stall.
    let mut sub = RawClient::connect(server.mqtt_addr(), Version::V5, "tls-watch")?;
    assert_eq!(sub.subscribe(1, "tls/stall", 1)?, vec![1]);
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-V",
            "mqttv5",
            "--cafile",
        ])
        .arg(&ca)
        .args(["-q", "1", "-t", "tls/stall", "-m", "through"])
        .output()?;
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = sub.expect(kind::PUBLISH, Duration::from_secs(10))?;
    assert_eq!(msg.publish_payload(Version::V5), Some(&b"through"[..]));
    let served_in = started.elapsed();
    assert!(
        stalled.iter_mut().all(|s| !closed_by_server(s)),
        "the stalled sockets are still open while the real client is served ({served_in:?})"
    );

    // The handshake timeout closes every stalled socket.
    wait_until(CLOSE_DEADLINE, "stalled handshakes to be closed", || {
        stalled.retain_mut(|s| !closed_by_server(s));
        stalled.is_empty().then_some(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
