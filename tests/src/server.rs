//! A `fleetmq serve` child process on loopback port 0: started, its address read from the one
//! line it prints once bound, its memory read from `/proc`, stopped with SIGTERM on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// How long the server may take to print its listening line (a debug build loading routes).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of stderr kept for failure messages.
const LOG_LINES: usize = 200;

/// The binary under test: `$FLEETMQ_BIN`, else `fleetmq` in the target directory this test
/// executable was built into (`target/debug/deps/<test>` → `target/debug/fleetmq`).
pub fn fleetmq_bin() -> Result<PathBuf, HarnessError> {
    let path = match std::env::var_os("FLEETMQ_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe()?;
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .ok_or_else(|| HarnessError::BinaryMissing(exe.display().to_string()))?;
            profile_dir.join("fleetmq")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::BinaryMissing(path.display().to_string()))
    }
}

/// A running broker; SIGTERM and reaped when dropped.
pub struct Server {
    child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `fleetmq serve --mqtt 127.0.0.1:0 --http 127.0.0.1:0 <extra>` and waits for
    /// `fleetmq listening mqtt=IP:PORT http=IP:PORT`.
    ///
    /// # Errors
    /// The binary is missing, or the server exits or stays silent for 30 s.
    pub fn start(extra: &[&str]) -> Result<Server, HarnessError> {
        let bin = fleetmq_bin()?;
        let mut child = Command::new(&bin)
            .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            thread::spawn(move || drain_lines(stderr, |line| push_log(&log, line)));
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                drain_lines(stdout, |line| {
                    if let Some(addrs) = parse_listening(&line) {
                        let _ = tx.send(addrs);
                    }
                    push_log(&log, line);
                })
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((mqtt, http)) => {
                    return Ok(Server {
                        child,
                        mqtt,
                        http,
                        log,
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait()? {
                        return Err(start_error(&log, &format!("exited with {status}")));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(start_error(&log, "no listening line within 30 s"));
                }
            }
        }
    }

    /// The bound MQTT (TCP) address from the listening line.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt
    }

    /// The bound HTTP address from the listening line.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Process id of the server (for `/proc` and signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory of the server process (`VmRSS` in `/proc/PID/status`), bytes.
    ///
    /// # Errors
    /// `/proc` is unreadable (the process is gone) or has no `VmRSS` line.
    pub fn rss_bytes(&self) -> Result<u64, HarnessError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| {
                let kib = line
                    .strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim();
                kib.parse::<u64>().ok().map(|k| k * 1024)
            })
            .ok_or_else(|| HarnessError::Proc(format!("no VmRSS for pid {}", self.pid())))
    }

    /// The last lines the server logged (stdout and stderr), for assertion messages.
    pub fn log_tail(&self) -> String {
        match self.log.lock() {
            Ok(lines) => lines.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::from("<log lock poisoned>"),
        }
    }

    /// Sends SIGTERM and waits for the exit status (SIGKILL after 10 s).
    ///
    /// # Errors
    /// The signal could not be sent or the process not reaped.
    pub fn terminate(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

fn drain_lines(stream: impl Read, mut each: impl FnMut(String)) {
    for line in BufReader::new(stream).lines() {
        match line {
            Ok(line) => each(line),
            Err(_) => break,
        }
    }
}

fn push_log(log: &Mutex<VecDeque<String>>, line: String) {
    if let Ok(mut lines) = log.lock() {
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

fn start_error(log: &Mutex<VecDeque<String>>, why: &str) -> HarnessError {
    let tail = log
        .lock()
        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    HarnessError::Start(format!("{why}; output:\n{tail}"))
}

/// Parses `fleetmq listening mqtt=IP:PORT http=IP:PORT`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("fleetmq listening ")?;
    let mut mqtt = None;
    let mut http = None;
    for word in rest.split_whitespace() {
        if let Some(addr) = word.strip_prefix("mqtt=") {
            mqtt = addr.parse().ok();
        } else if let Some(addr) = word.strip_prefix("http=") {
            http = addr.parse().ok();
        }
    }
    Some((mqtt?, http?))
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn parses_the_listening_line() {
        let (mqtt, http) =
            parse_listening("fleetmq listening mqtt=127.0.0.1:41234 http=[::1]:8080").unwrap();
        assert_eq!(mqtt.port(), 41234);
        assert_eq!(http.to_string(), "[::1]:8080");
        assert!(parse_listening("fleetmq listening mqtt=nonsense http=1.2.3.4:5").is_none());
        assert!(parse_listening("something else").is_none());
    }
}
