"""A throw-away 3-master Redis Cluster 7 on free loopback ports, and what tests need to use a
single redis-server or a cluster alike (`store` fixture, `redis_flags`, `cli_args`).

Each node is a `redis-server --cluster-enabled yes` with persistence off in a directory of its
own; `redis-cli --cluster create ... --cluster-replicas 0` assigns the 16384 slots; the cluster is
ready when every node reports `cluster_state:ok` and knows all three masters.
"""

import pathlib
import subprocess
from typing import List

import pytest

from harness import RedisProcess, Timeout, _cli_quote, free_port_pair, wait_for

MASTERS = 3
READY_TIMEOUT = 30.0
# Tries at starting the nodes when one exits at start (`RedisCluster._spawn_all`).
START_ATTEMPTS = 3


def _free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too. Both come from
    below the kernel's ephemeral range and from this xdist worker's own slice (see
    `harness.free_port`): a port found by binding port 0 could be taken by another worker or by
    an outgoing connection before the node binds it."""
    return free_port_pair(10000)


def _info(port: int, section: str) -> dict:
    out = subprocess.run(["redis-cli", "-p", str(port), "CLUSTER", section],
                         capture_output=True, timeout=5)
    fields = {}
    for line in out.stdout.decode(errors="replace").splitlines():
        key, _, value = line.strip().partition(":")
        fields[key] = value
    return fields


class RedisCluster:
    """Three masters on loopback; `stop()` kills every node."""

    def __init__(self, workdir: pathlib.Path):
        self.workdir = workdir
        self.ports: List[int] = []
        self.procs: List[subprocess.Popen] = []

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def seeds(self) -> str:
        """The `--redis-cluster` value: every node's URL."""
        return self.seeds_of(self.ports)

    def _spawn(self, i: int) -> subprocess.Popen:
        port = self.ports[i]
        node_dir = self.workdir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
             "--dir", str(node_dir), "--logfile", str(node_dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _log(self, port: int) -> str:
        try:
            return (self.workdir / f"node-{port}" / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no log)"

    def _spawn_all(self) -> bool:
        """Starts every node; False (all stopped again) if one exited at start, which a port
        taken between `free_ports()` and the node's bind does: each node binds two ports, and
        another program on the machine may take one (the tests' own outgoing connections and
        other xdist workers cannot: see `harness.free_port`)."""
        self.procs = [self._spawn(i) for i in range(MASTERS)]
        for port, proc in zip(self.ports, self.procs):
            wait_for(lambda: proc.poll() is not None or self._ping(port), 10,
                     f"cluster node {port} PONG")
            if proc.poll() is not None:
                self.stop()
                return False
        return True

    def _ping(self, port: int) -> bool:
        try:
            return RedisProcess(None, port).ping()
        except OSError:
            return False

    @staticmethod
    def free_ports() -> List[int]:
        """Ports for a cluster to be started later (`start(workdir, ports)`)."""
        return [_free_cluster_port() for _ in range(MASTERS)]

    @staticmethod
    def seeds_of(ports: List[int]) -> str:
        """The `--redis-cluster` value for nodes on `ports`."""
        return ",".join(f"redis://127.0.0.1:{p}" for p in ports)

    @classmethod
    def start(cls, workdir: pathlib.Path, ports: List[int] = None) -> "RedisCluster":
        cluster = cls(workdir)
        try:
            for attempt in range(START_ATTEMPTS):
                # Given ports are the caller's to keep (a restart on the same ports): tried
                # again as they are.
                cluster.ports = ports or cls.free_ports()
                if cluster._spawn_all():
                    break
                exited = [p for p, proc in zip(cluster.ports, cluster.procs)
                          if proc.returncode not in (None, -9)]
                logs = "\n".join(f"node {p}: {cluster._log(p)[-500:]}" for p in exited)
                assert attempt + 1 < START_ATTEMPTS, f"cluster nodes exited at start:\n{logs}"
            out = subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *[f"127.0.0.1:{p}" for p in cluster.ports],
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, timeout=60)
            assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
            cluster.wait_ready()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def ready(self) -> bool:
        for port in self.ports:
            info = _info(port, "INFO")
            if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(MASTERS):
                return False
        return True

    def wait_ready(self):
        wait_for(self.ready, READY_TIMEOUT, "cluster_state:ok on every node")

    def restart(self):
        """Starts every stopped node again on its port: the same cluster (each node's
        `nodes.conf`), empty. Returns once the cluster is ready."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[i] = self._spawn(i)
        for port in self.ports:
            wait_for(lambda: self._ping(port), 10, f"cluster node {port} PONG")
        self.wait_ready()

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def cli(self, *commands) -> List[str]:
        """Runs commands (tuples of words) through one `redis-cli -c --raw`, which follows the
        cluster's redirections; one output line per reply line (as `RedisProcess.cli`)."""
        script = "".join(" ".join(_cli_quote(w) for w in c) + "\n" for c in commands)
        out = subprocess.run(["redis-cli", "-c", "-p", str(self.port), "--raw"],
                             input=script.encode(), capture_output=True, timeout=20)
        return [line for line in out.stdout.decode().splitlines()
                if not line.startswith("-> Redirected to slot")]


def redis_flags(store) -> list:
    """fleetmq's flags for a single redis-server or a cluster."""
    if isinstance(store, RedisCluster):
        return ["--redis-cluster", store.seeds]
    return ["--redis", store.url]


def cli_args(store) -> list:
    """redis-cli arguments reaching `store`; `-c` follows a cluster's MOVED redirections."""
    if isinstance(store, RedisCluster):
        return ["-c", "-p", str(store.port)]
    return ["-p", str(store.port)]


@pytest.fixture(params=["single", "cluster"])
def store(request, tmp_path):
    """A redis-server, or a 3-master Redis Cluster, of the test's own."""
    if request.param == "single":
        server = RedisProcess.start(tmp_path)
    else:
        server = RedisCluster.start(tmp_path / "cluster")
    yield server
    server.stop()


__all__ = ["RedisCluster", "Timeout", "cli_args", "redis_flags", "store"]
