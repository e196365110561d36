//! CI smoke test: runs each `fleetmq-bench` subcommand for a second or two against a debug
//! `fleetmq` and checks that the JSON figures are sane (something was sent and received, memory
//! was read). No timing is asserted: CI machines are too noisy for that.
//!
//! The broker binary is looked up next to the bench binary (same target directory); if it is not
//! there it is built with `cargo build -p fleetmq` first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long a debug broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bench_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetmq-bench"))
}

/// The `fleetmq` binary in the bench's target directory, built if missing.
fn fleetmq_binary() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let bench = bench_binary();
    let dir = bench.parent().ok_or("bench binary has no directory")?;
    let fleetmq = dir.join(format!("fleetmq{}", std::env::consts::EXE_SUFFIX));
    if !fleetmq.exists() {
        // Same profile and target directory as this test: debug, and CARGO_TARGET_DIR if set.
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "fleetmq"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .status()?;
        if !status.success() || !fleetmq.exists() {
            return Err(format!(
                "cargo build -p fleetmq failed; {} missing",
                fleetmq.display()
            )
            .into());
        }
    }
    Ok(fleetmq)
}

/// A running broker, killed on drop.
struct Broker {
    child: Child,
    mqtt: String,
    http: String,
}

impl Broker {
    fn start() -> Result<Broker, Box<dyn std::error::Error>> {
        let mut child = Command::new(fleetmq_binary()?)
            .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut broker = Broker {
            child,
            mqtt: String::new(),
            http: String::new(),
        };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while broker.mqtt.is_empty() || broker.http.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| "no listening line in time")?;
            if let Some(rest) = line.strip_prefix("fleetmq listening ") {
                for pair in rest.split_whitespace() {
                    match pair.split_once('=') {
                        Some(("mqtt", a)) => broker.mqtt = a.to_string(),
                        Some(("http", a)) => broker.http = a.to_string(),
                        _ => {}
                    }
                }
            }
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs the bench with `args` plus `--json FILE` and returns the parsed JSON.
fn bench(args: &[&str], name: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!(
        "fleetmq-bench-smoke-{}-{name}.json",
        std::process::id()
    ));
    let output = Command::new(bench_binary())
        .args(args)
        .arg("--json")
        .arg(&path)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "fleetmq-bench {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let text = std::fs::read_to_string(&path)?;
    std::fs::remove_file(&path).ok();
    Ok(serde_json::from_str(&text)?)
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn check_latency(v: &Value) {
    let l = &v["latency_us"];
    let (p50, p99, max) = (num(l, "p50"), num(l, "p99"), num(l, "max"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "latency {l}");
}

#[test]
fn throughput_qos0_and_qos1_deliver() -> TestResult {
    let broker = Broker::start()?;
    for qos in ["0", "1"] {
        let v = bench(
            &[
                "throughput",
                "--mqtt",
                &broker.mqtt,
                "--publishers",
                "2",
                "--subscribers",
                "2",
                "--size",
                "64",
                "--qos",
                qos,
                "--duration",
                "1",
                "--rate",
                "1000",
            ],
            &format!("throughput{qos}"),
        )?;
        let (sent, received) = (num(&v, "sent"), num(&v, "received"));
        assert!(sent > 0.0 && received > 0.0, "{v}");
        // Two subscribers see every message at most once each (QoS 1 may redeliver only on
        // reconnect, which does not happen here). At a paced 1,000 msg/s no queue limit is
        // reached, so QoS 1 must arrive in full: this checks the client's ack handling.
        assert!(received <= 2.0 * sent, "{v}");
        if qos == "1" {
            assert_eq!(received, 2.0 * sent, "QoS 1 must deliver everything: {v}");
        }
        assert!(
            num(&v, "sent_per_sec") > 0.0 && num(&v, "received_per_sec") > 0.0,
            "{v}"
        );
        check_latency(&v);
    }
    Ok(())
}

#[test]
fn connections_reads_the_broker_rss() -> TestResult {
    let broker = Broker::start()?;
    let pid = broker.child.id().to_string();
    let v = bench(
        &[
            "connections",
            "--mqtt",
            &broker.mqtt,
            "--count",
            "200",
            "--pid",
            &pid,
        ],
        "connections",
    )?;
    assert_eq!(num(&v, "connections"), 200.0, "{v}");
    assert!(num(&v, "connect_per_sec") > 0.0, "{v}");
    assert!(num(&v, "rss_bytes") > 0.0, "{v}");
    assert!(num(&v, "rss_per_connection_bytes") >= 0.0, "{v}");
    Ok(())
}

#[test]
fn ws_connections_reads_the_broker_rss_and_idle_watchers_are_small() -> TestResult {
    let broker = Broker::start()?;
    let pid = broker.child.id().to_string();
    let url = format!("ws://{}/ws", broker.http);
    let v = bench(
        &[
            "ws-connections",
            "--ws",
            &url,
            "--count",
            "300",
            "--pid",
            &pid,
        ],
        "ws-connections",
    )?;
    assert_eq!(num(&v, "connections"), 300.0, "{v}");
    assert!(num(&v, "connect_per_sec") > 0.0, "{v}");
    assert!(num(&v, "rss_bytes") > 0.0, "{v}");
    // ~6 KB each; tungstenite's default 128 KiB read buffer per socket made it ~139 KB.
    let per = num(&v, "rss_per_connection_bytes");
    assert!((0.0..64.0 * 1024.0).contains(&per), "{v}");
    Ok(())
}

#[test]
fn drive_over_websocket_mqtt_and_http_loses_nothing() -> TestResult {
    let broker = Broker::start()?;
    let ws = format!("ws://{}/ws", broker.http);
    let common = [
        "drive",
        "--mqtt",
        &broker.mqtt,
        "--drivers",
        "8",
        "--interval-ms",
        "200",
        "--duration",
        "2",
        "--watchers",
        "2",
    ];
    let http = format!("http://{}", broker.http);
    for (name, extra) in [
        ("ws", vec!["--ws", ws.as_str()]),
        ("mqtt", vec!["--watch-mqtt"]),
        // Drivers posting over HTTP keep-alive (docs/ingest-http.md), watched over MQTT.
        ("http", vec!["--watch-mqtt", "--http", http.as_str()]),
    ] {
        let args: Vec<&str> = common.iter().copied().chain(extra).collect();
        let v = bench(&args, &format!("drive-{name}"))?;
        assert!(num(&v, "updates_sent") >= 8.0, "{name}: {v}");
        assert!(num(&v, "states_received") > 0.0, "{name}: {v}");
        assert!(num(&v, "updates_per_sec") > 0.0, "{name}: {v}");
        assert_eq!(num(&v, "lost"), 0.0, "{name}: {v}");
        check_latency(&v);
    }
    Ok(())
}

#[test]
fn drive_watch_mix_and_pid_report_broker_cpu() -> TestResult {
    let broker = Broker::start()?;
    let ws = format!("ws://{}/ws", broker.http);
    let pid = broker.child.id().to_string();
    let v = bench(
        &[
            "drive",
            "--mqtt",
            &broker.mqtt,
            "--drivers",
            "6",
            "--interval-ms",
            "200",
            "--duration",
            "2",
            "--ws",
            &ws,
            "--watch",
            "riders=3,routes=2,fleet=1",
            "--pid",
            &pid,
            "--warmup",
            "1",
        ],
        "drive-mix",
    )?;
    assert!(num(&v, "updates_sent") >= 6.0, "{v}");
    // The fleet watcher covers every vehicle, so none may be lost.
    assert_eq!(num(&v, "lost"), 0.0, "{v}");
    // Riders and route watchers add to the fleet watcher's one state per update.
    assert!(num(&v, "states_received") > num(&v, "updates_sent"), "{v}");
    let cpu = num(&v, "broker_cpu_us_per_update");
    assert!(cpu.is_finite() && cpu >= 0.0, "{v}");
    check_latency(&v);
    // The second second of driving: a part of the same deliveries.
    assert_eq!(num(&v, "warmup_s"), 1.0, "{v}");
    let (all, steady) = (&v["latency_us"], &v["latency_steady_us"]);
    let steady_max = steady["max"].as_f64().unwrap_or(f64::NAN);
    assert!(steady["p50"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert!(steady_max <= all["max"].as_f64().unwrap_or(0.0), "{v}");
    Ok(())
}

/// Batched frames go through the watchers' scan as well: every state of an `updates` frame
/// counts, and the fleet watcher's last states all arrive.
#[test]
fn drive_watch_mix_batched_loses_nothing() -> TestResult {
    let broker = Broker::start()?;
    let ws = format!("ws://{}/ws", broker.http);
    let v = bench(
        &[
            "drive",
            "--mqtt",
            &broker.mqtt,
            "--drivers",
            "40",
            "--interval-ms",
            "200",
            "--duration",
            "2",
            "--ws",
            &ws,
            "--watch",
            "riders=3,routes=2,fleet=2",
            "--batch",
        ],
        "drive-mix-batch",
    )?;
    assert!(num(&v, "updates_sent") >= 40.0, "{v}");
    assert_eq!(num(&v, "lost"), 0.0, "{v}");
    // Two fleet watchers each get (nearly) every update.
    assert!(
        num(&v, "states_received") >= 1.5 * num(&v, "updates_sent"),
        "{v}"
    );
    check_latency(&v);
    Ok(())
}
