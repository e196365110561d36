//! Black-box tests of the `fleetmq` binary: configuration precedence (flag > env > file >
//! default), one-line errors with exit code 2, the "listening" line, SIGTERM/SIGINT shutdown,
//! `passwd` and `certs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};

/// Generous: the binary is a debug build and the machine is shared.
const DEADLINE: Duration = Duration::from_secs(30);

/// The binary with every `FLEETMQ_*` and `RUST_LOG` variable of the test's own environment
/// removed, so only what a test sets is seen.
fn fleetmq() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetmq"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLEETMQ_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs to completion, failing the test if it takes longer than [`DEADLINE`].
fn output(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetmq");
    let mut child = Running::new(child);
    let status = child.wait(DEADLINE);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.child.stdout.take() {
        out.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.child.stderr.take() {
        err.read_to_end(&mut stderr).expect("read stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A child process killed on drop, so a failing test leaves nothing running.
struct Running {
    child: Child,
}

impl Running {
    fn new(child: Child) -> Running {
        Running { child }
    }

    /// Waits for exit, polling until `deadline`; panics (and kills) past it.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "fleetmq did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server started with stdout and stderr read by threads, line by line.
struct Server {
    proc: Running,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fleetmq");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Server {
            proc: Running::new(child),
            stdout,
            stderr,
        }
    }

    /// Waits for `fleetmq listening mqtt=IP:PORT http=IP:PORT` and returns both addresses.
    fn listening(&self) -> (SocketAddr, SocketAddr) {
        let line = self.stdout.recv_timeout(DEADLINE).unwrap_or_else(|e| {
            panic!("no listening line ({e}); stderr: {}", self.stderr_so_far())
        });
        parse_listening(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"))
    }

    fn stderr_so_far(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.proc.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("fleetmq listening ")?;
    let mut parts = rest.split(' ');
    let mqtt = parts.next()?.strip_prefix("mqtt=")?.parse().ok()?;
    let http = parts.next()?.strip_prefix("http=")?.parse().ok()?;
    // Further listeners (`mqtts=`, `https=`) may follow, each as `name=IP:PORT`.
    parts
        .all(|p| {
            p.split_once('=')
                .is_some_and(|(_, a)| a.parse::<SocketAddr>().is_ok())
        })
        .then_some((mqtt, http))
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("fleetmq-cli-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "expected exactly one line on stderr, got {text:?}"
    );
    text.trim_end().to_string()
}

/// `serve ARGS --print-config`, parsed as TOML.
fn resolved(cmd: &mut Command, args: &[&str]) -> toml::Table {
    let out = output(cmd.arg("serve").args(args).arg("--print-config"));
    assert!(
        out.status.success(),
        "print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("print-config is TOML")
}

fn int(t: &toml::Table, key: &str) -> i64 {
    t.get(key)
        .and_then(toml::Value::as_integer)
        .unwrap_or_else(|| panic!("{key} missing or not an integer in {t:?}"))
}

fn string<'a>(t: &'a toml::Table, key: &str) -> &'a str {
    t.get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("{key} missing or not a string in {t:?}"))
}

#[test]
fn defaults_are_those_of_the_spec() {
    let t = resolved(&mut fleetmq(), &[]);
    assert_eq!(string(&t, "mqtt"), "127.0.0.1:1883");
    assert_eq!(string(&t, "http"), "127.0.0.1:8080");
    assert_eq!(int(&t, "max_keepalive"), 65535);
    assert_eq!(int(&t, "receive_maximum"), 1024);
    assert_eq!(int(&t, "max_packet_size"), 1 << 20);
    assert_eq!(int(&t, "max_connections"), 1_000_000);
    assert_eq!(int(&t, "max_queued"), 1000);
    assert_eq!(string(&t, "state_ttl"), "1h");
    assert_eq!(string(&t, "log"), "pretty");
    assert!(!t.contains_key("mqtts") && !t.contains_key("redis"));
    assert!(!t.contains_key("allow_anonymous"));
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "fleetmq.toml",
        "max_queued = 10\nmax_keepalive = 10\nreceive_maximum = 10\nmqtt = \"127.0.0.1:1010\"\n\
         state_ttl = \"10s\"\nallow_anonymous = false\n",
    );
    let file = file.to_str().expect("utf-8 path");

    // file beats default; env beats file; flag beats env. Each key sits at a different level.
    let t = resolved(
        fleetmq()
            .env("FLEETMQ_MAX_QUEUED", "20")
            .env("FLEETMQ_MAX_KEEPALIVE", "20")
            .env("FLEETMQ_MQTT", "127.0.0.1:2020")
            .env("FLEETMQ_ALLOW_ANONYMOUS", "true"),
        &[
            "--config",
            file,
            "--max-queued",
            "30",
            "--mqtt=127.0.0.1:3030",
        ],
    );
    assert_eq!(int(&t, "max_queued"), 30, "flag over env and file");
    assert_eq!(
        string(&t, "mqtt"),
        "127.0.0.1:3030",
        "flag over env and file"
    );
    assert_eq!(int(&t, "max_keepalive"), 20, "env over file");
    assert_eq!(
        t.get("allow_anonymous").and_then(toml::Value::as_bool),
        Some(true),
        "env over file"
    );
    assert_eq!(int(&t, "receive_maximum"), 10, "file over default");
    assert_eq!(string(&t, "state_ttl"), "10s", "file over default");
    assert_eq!(int(&t, "max_connections"), 1_000_000, "default");

    // The config file itself can come from the environment.
    let t = resolved(fleetmq().env("FLEETMQ_CONFIG", file), &[]);
    assert_eq!(int(&t, "max_queued"), 10);

    // A bare --allow-anonymous means true, and beats the file's false.
    let t = resolved(&mut fleetmq(), &["--config", file, "--allow-anonymous"]);
    assert_eq!(
        t.get("allow_anonymous").and_then(toml::Value::as_bool),
        Some(true)
    );
}

#[test]
fn print_config_reads_back_and_hides_the_jwt_secret() {
    let dir = TempDir::new("roundtrip");
    let first = output(fleetmq().args([
        "serve",
        "--print-config",
        "--max-queued",
        "77",
        "--max-packet-size",
        "64KiB",
        "--log",
        "json",
        "--jwt-secret",
        "hunter2",
    ]));
    assert!(first.status.success());
    let text = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(!text.contains("hunter2"), "secret printed: {text}");
    let file = dir.file("printed.toml", &text);
    let t = resolved(&mut fleetmq(), &["--config", file.to_str().expect("utf-8")]);
    assert_eq!(int(&t, "max_queued"), 77);
    assert_eq!(int(&t, "max_packet_size"), 65536);
    assert_eq!(string(&t, "log"), "json");
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let dir = TempDir::new("unknown");
    let file = dir.file("bad.toml", "max_qeued = 5\n");
    let out = output(fleetmq().args(["serve", "--config", file.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(line.contains("bad.toml"), "{line}");
    assert!(line.contains("unknown key \"max_qeued\""), "{line}");
    assert!(line.contains("did you mean \"max_queued\""), "{line}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn bad_values_and_unreadable_files_exit_2_with_one_line() {
    let dir = TempDir::new("badvalue");
    let file = dir.file("bad.toml", "max_keepalive = 70000\n");
    let out = output(fleetmq().args(["serve", "--config", file.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("\"max_keepalive\"") && line.contains("65535"),
        "{line}"
    );

    let missing = dir.0.join("missing.toml");
    let out = output(fleetmq().args(["serve", "--config", missing.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("missing.toml") && line.contains("cannot read"),
        "{line}"
    );

    let out = output(fleetmq().env("FLEETMQ_MAX_QUEUED", "lots").arg("serve"));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(line.contains("FLEETMQ_MAX_QUEUED"), "{line}");

    let out = output(fleetmq().args(["serve", "--mqtt", "nowhere"]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("--mqtt") && line.contains("IP:PORT"),
        "{line}"
    );

    let out = output(fleetmq().args(["serve", "--mqtts", "127.0.0.1:0"]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(
        line.contains("--tls-cert") && line.contains("fleetmq certs"),
        "{line}"
    );
}

#[test]
fn port_in_use_exits_2_naming_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let out = output(fleetmq().args([
        "serve",
        "--mqtt",
        &addr.to_string(),
        "--http",
        "127.0.0.1:0",
    ]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stderr_line(&out);
    assert!(line.contains(&addr.port().to_string()), "{line}");
    assert!(line.contains("--mqtt"), "{line}");
    assert!(out.stdout.is_empty(), "no listening line when bind fails");
}

fn serve_on_free_ports(extra: &[&str]) -> Server {
    Server::start(
        fleetmq()
            .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra),
    )
}

#[test]
fn sigterm_stops_the_server_with_exit_0() {
    let mut server = serve_on_free_ports(&[]);
    let (mqtt, http) = server.listening();
    assert_ne!(mqtt.port(), 0, "real port printed");
    assert_ne!(http.port(), 0, "real port printed");
    assert_ne!(mqtt, http);
    TcpStream::connect_timeout(&mqtt, DEADLINE).expect("mqtt port accepts");
    server.signal("TERM");
    let status = server.proc.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr_so_far());
}

#[test]
fn sigint_stops_the_server_with_exit_0_and_json_logs() {
    let mut server = serve_on_free_ports(&["--log", "json"]);
    server.listening();
    server.signal("INT");
    let status = server.proc.wait(DEADLINE);
    assert_eq!(status.code(), Some(0));
    // The stderr reader thread ends when the process does; every log line is one JSON object.
    let logs: Vec<String> = server.stderr.iter().collect();
    assert!(!logs.is_empty(), "no log lines");
    for line in &logs {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(logs.iter().any(|l| l.contains("listening")), "{logs:?}");
}

#[test]
fn passwd_prints_an_argon2id_hash_that_verifies() {
    let mut child = fleetmq()
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write stdin");
    let mut child = Running::new(child);
    let status = child.wait(DEADLINE);
    assert!(status.success());
    let mut out = String::new();
    child
        .child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let hash = out.trim_end();
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let parsed = PasswordHash::new(hash).expect("PHC string");
    let argon = argon2::Argon2::default();
    assert!(argon.verify_password(b"correct horse", &parsed).is_ok());
    assert!(argon.verify_password(b"correct horse\n", &parsed).is_err());
    assert!(argon.verify_password(b"wrong", &parsed).is_err());

    let empty = output(fleetmq().arg("passwd").stdin(Stdio::null()));
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr_line(&empty).contains("empty password"));
}

#[test]
fn certs_writes_every_file_and_refuses_to_overwrite() {
    let dir = TempDir::new("certs");
    let out_dir = dir.0.join("tls");
    let out_arg = out_dir.to_str().expect("utf-8");
    let out = output(fleetmq().args(["certs", "--out", out_arg, "--client-cn", "bus-9"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = [
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "client.pem",
        "client-key.pem",
    ];
    for name in names {
        let text = std::fs::read_to_string(out_dir.join(name)).expect(name);
        assert!(text.starts_with("-----BEGIN "), "{name}");
    }
    let ca = std::fs::read(out_dir.join("ca.pem")).expect("ca");

    let again = output(fleetmq().args(["certs", "--out", out_arg]));
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_line(&again).contains("--force"));
    assert_eq!(
        std::fs::read(out_dir.join("ca.pem")).expect("ca"),
        ca,
        "untouched"
    );

    let forced = output(fleetmq().args(["certs", "--out", out_arg, "--force"]));
    assert!(forced.status.success());
    assert_ne!(
        std::fs::read(out_dir.join("ca.pem")).expect("ca"),
        ca,
        "replaced"
    );
    openssl_verify(&out_dir);
}

fn openssl_verify(dir: &Path) {
    let Ok(out) = Command::new("openssl")
        .args(["verify", "-CAfile", "ca.pem", "server.pem", "client.pem"])
        .current_dir(dir)
        .output()
    else {
        println!("note: openssl not installed; chain not verified");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn listening_line_parser_is_strict() {
    assert!(parse_listening("fleetmq listening mqtt=127.0.0.1:1 http=[::1]:2").is_some());
    assert!(parse_listening("fleetmq listening mqtt=127.0.0.1:1").is_none());
    assert!(
        parse_listening("fleetmq listening mqtt=127.0.0.1:1 http=127.0.0.1:2 mqtts=127.0.0.1:3")
            .is_some()
    );
    assert!(parse_listening("fleetmq listening mqtt=127.0.0.1:1 http=127.0.0.1:2 junk").is_none());
    assert!(parse_listening("listening mqtt=127.0.0.1:1 http=127.0.0.1:2").is_none());
}

/// `routes check` on the GeoJSON below (one route, two stops, one geofence) prints the counts.
const ROUTES: &str = r#"{"type":"FeatureCollection","features":[
  {"type":"Feature","properties":{"route_id":"A","name":"Route A"},
   "geometry":{"type":"LineString","coordinates":[[145.77,-16.92],[145.78,-16.92],[145.78,-16.93]]}},
  {"type":"Feature","properties":{"stop_id":"s1","route_id":"A","name":"One","sequence":1},
   "geometry":{"type":"Point","coordinates":[145.775,-16.92]}},
  {"type":"Feature","properties":{"stop_id":"s2","route_id":"A","name":"Two","sequence":2},
   "geometry":{"type":"Point","coordinates":[145.78,-16.925]}},
  {"type":"Feature","properties":{"geofence_id":"depot","name":"Depot"},
   "geometry":{"type":"Polygon","coordinates":[[[145.76,-16.91],[145.765,-16.91],[145.765,-16.915],[145.76,-16.91]]]}}
]}"#;

/// `routes: N, stops: N, geofences: N, ...` as numbers by name.
fn summary(out: &Output) -> Vec<(String, usize)> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text:?}");
    text.trim_end()
        .split(", ")
        .map(|part| {
            let (k, v) = part.split_once(": ").unwrap_or_else(|| panic!("{part:?}"));
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("{part:?}")),
            )
        })
        .collect()
}

fn count(summary: &[(String, usize)], key: &str) -> usize {
    summary
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{key} missing from {summary:?}"))
}

#[test]
fn routes_check_summarises_geojson_and_gtfs() {
    let dir = TempDir::new("routes");
    let file = dir.file("routes.geojson", ROUTES);
    let out = output(fleetmq().args(["routes", "check", file.to_str().expect("utf-8")]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(count(&s, "routes"), 1);
    assert_eq!(count(&s, "stops"), 2);
    assert_eq!(count(&s, "geofences"), 1);

    let gtfs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/cairns_gtfs.zip");
    let out = output(fleetmq().args(["routes", "check", gtfs.to_str().expect("utf-8")]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert!(count(&s, "routes") > 5, "{s:?}");
    assert!(count(&s, "stops") > 100, "{s:?}");
}

#[test]
fn routes_check_names_the_file_and_first_bad_feature() {
    let dir = TempDir::new("badroutes");
    let bad = ROUTES.replace("[145.775,-16.92]", "[245.775,-16.92]");
    let file = dir.file("bad.geojson", &bad);
    let out = output(fleetmq().args(["routes", "check", file.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(2));
    let line = stderr_line(&out);
    assert!(line.contains("bad.geojson"), "{line}");
    assert!(line.contains("feature 1") && line.contains("s1"), "{line}");
    assert!(out.stdout.is_empty());

    let missing = dir.0.join("nope.geojson");
    let out = output(fleetmq().args(["routes", "check", missing.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).contains("nope.geojson"));
}

/// `GET path` over plain HTTP/1.1; the whole response as text, or `None` if it failed.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = Vec::new();
    // Bounded: the demo's few vehicles fit in far less.
    stream.take(1 << 20).read_to_end(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn demo_runs_buses_that_appear_over_http_and_stops_on_sigterm() {
    let mut server = Server::start(fleetmq().args([
        "demo",
        "--buses",
        "2",
        "--mqtt",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ]));
    let (_, http) = server.listening();
    let until = Instant::now() + DEADLINE;
    loop {
        let body = http_get(http, "/api/v1/vehicles").unwrap_or_default();
        if body.contains("\"bus-1\"") && body.contains("\"bus-2\"") {
            assert!(
                !body.contains("\"bus-3\""),
                "only 2 buses asked for: {body}"
            );
            break;
        }
        assert!(
            Instant::now() < until,
            "buses never appeared; last response {body:?}; stderr {}",
            server.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.signal("TERM");
    assert_eq!(server.proc.wait(DEADLINE).code(), Some(0));
}

#[test]
fn history_and_map_settings_are_checked_and_printed() {
    for (args, needle) in [
        (
            &["--postgres", "postgres://u@127.0.0.1:99999999/db"][..],
            "--postgres",
        ),
        (&["--map-tiles", "ftp://tiles"][..], "--map-tiles"),
        (&["--history-retention", "2h"][..], "--history-retention"),
    ] {
        let out = output(
            fleetmq()
                .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
                .args(args),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = stderr_line(&out);
        assert!(line.contains(needle), "{line}");
    }
    let t = resolved(
        &mut fleetmq(),
        &[
            "--postgres",
            "postgres://u:secret@127.0.0.1/db",
            "--map-tiles",
            "none",
            "--history-retention",
            "7d",
        ],
    );
    assert_eq!(
        string(&t, "postgres"),
        "postgres://u:<redacted>@127.0.0.1/db"
    );
    assert_eq!(string(&t, "map_tiles"), "none");
    assert_eq!(string(&t, "history_retention"), "7d");
    let d = resolved(&mut fleetmq(), &[]);
    assert_eq!(
        string(&d, "map_tiles"),
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    );
    assert_eq!(string(&d, "history_retention"), "30d");
}
