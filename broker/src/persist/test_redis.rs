//! Throw-away Redis servers for the persistence tests, on free loopback ports with persistence
//! off, killed on drop: one `redis-server`, or a 3-master Redis Cluster 7 made with
//! `redis-cli --cluster create`. Either can be restarted on its port (a node keeps its cluster
//! identity in its own directory's `nodes.conf`); a cluster can move slots between masters.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Target;

/// How long a server or a cluster may take to become ready on a loaded machine.
const READY: Duration = Duration::from_secs(30);

/// Waits for `ready`, panicking with `what` after [`READY`].
fn wait(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {READY:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Whether a Redis on `port` answers PING (or asks for a password first).
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

/// A redis-server on `port` in `dir`, with `extra` arguments.
fn spawn(port: u16, dir: &PathBuf, extra: &[&str]) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    wait(&format!("redis-server on {port} answers PING"), || {
        ping(port)
    });
    child
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One redis-server.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A server started with `extra` arguments (`--requirepass`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let child = spawn(port, &std::env::temp_dir(), extra);
        RedisServer { child, port }
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the server: a stopped Redis keeps its
    /// sockets open and answers nothing, as one behind a dead network does.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn target(&self) -> Target {
        Target::Single(self.url())
    }

    /// Kills the server and starts an empty one on the same port.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        self.child = spawn(self.port, &std::env::temp_dir(), &[]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Three cluster masters sharing the 16384 slots.
pub struct RedisCluster {
    nodes: Vec<(u16, PathBuf, Child)>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let mut cluster = RedisCluster { nodes: Vec::new() };
        while cluster.nodes.len() < 3 {
            let port = free_port();
            // The cluster bus listens on port + 10000.
            if port > 55_535 || TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let dir = std::env::temp_dir().join(format!("fleetmq-cluster-{port}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("node dir");
            let child = spawn(port, &dir, Self::NODE_ARGS);
            cluster.nodes.push((port, dir, child));
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|(p, _, _)| format!("127.0.0.1:{p}")),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ready();
        cluster
    }

    const NODE_ARGS: &[&str] = &[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    ];

    /// Every node reports `cluster_state:ok` and knows the three masters.
    pub fn wait_ready(&self) {
        wait("cluster_state:ok on every node", || {
            self.nodes.iter().all(|(port, _, _)| {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                    .stdin(Stdio::null())
                    .output();
                out.is_ok_and(|o| {
                    let text = String::from_utf8_lossy(&o.stdout);
                    text.contains("cluster_state:ok") && text.contains("cluster_known_nodes:3")
                })
            })
        });
    }

    pub fn target(&self) -> Target {
        Target::Cluster(
            self.nodes
                .iter()
                .map(|(p, _, _)| format!("redis://127.0.0.1:{p}"))
                .collect(),
        )
    }

    /// Moves `slots` hash slots, with their keys, from the first master to the second
    /// (`redis-cli --cluster reshard`), as an operator rebalancing the cluster would.
    pub fn move_slots(&self, slots: u16) {
        let id = |port: u16| {
            let out = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "CLUSTER", "MYID"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli is installed");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let (from, to) = (id(self.nodes[0].0), id(self.nodes[1].0));
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.nodes[0].0))
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        self.wait_ready();
    }

    /// Kills every node and starts them again (same ports, same cluster), then waits until the
    /// cluster is ready.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Kills every node (the cluster is away until [`RedisCluster::start_again`]).
    pub fn stop(&mut self) {
        for (_, _, child) in &mut self.nodes {
            kill(child);
        }
    }

    /// Starts the stopped nodes again (same ports, same cluster, empty), then waits until the
    /// cluster is ready.
    pub fn start_again(&mut self) {
        for (port, dir, child) in &mut self.nodes {
            *child = spawn(*port, dir, Self::NODE_ARGS);
        }
        self.wait_ready();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, dir, child) in &mut self.nodes {
            kill(child);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
