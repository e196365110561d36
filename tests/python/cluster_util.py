"""A fleetmq cluster of real processes for the cluster tests (README "Running a cluster"): one
redis-server, N `fleetmq serve --cluster` nodes and HAProxy running the shipped
`deploy/haproxy.cfg`, all on free loopback ports.

Nothing here sleeps to synchronise: start-up waits for each process to answer, and `Cluster.wait_nodes`
waits for the membership listing to say what is expected.
"""

import json
import os
import pathlib
import subprocess
import urllib.error
import urllib.request
from typing import Dict, List, Optional

from harness import BrokerProcess, RedisProcess, free_port, wait_for
from redis_cluster_util import RedisCluster, redis_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
HAPROXY = "/usr/sbin/haproxy"
# deploy/haproxy.cfg names three nodes.
HAPROXY_NODES = ("a", "b", "c")


def get(host: str, port: int, path: str, timeout: float = 5.0):
    """(status, parsed JSON or None) of one GET; connection errors give (None, None)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


class Endpoint:
    """Something with MQTT and HTTP addresses, as the bridge helpers expect (`addr`,
    `http_host`, `http_port`): HAProxy's frontends."""

    def __init__(self, mqtt_port: int, http_port: int):
        self.host, self.port = "127.0.0.1", mqtt_port
        self.http_host, self.http_port = "127.0.0.1", http_port

    @property
    def addr(self):
        return (self.host, self.port)


class Haproxy:
    """`haproxy -db -f deploy/haproxy.cfg` in front of three nodes, addresses from the environment."""

    def __init__(self, nodes: Dict[str, BrokerProcess], workdir: pathlib.Path):
        self.front = Endpoint(free_port(), free_port())
        env = dict(os.environ)
        env["FLEETMQ_MQTT_BIND"] = f"127.0.0.1:{self.front.port}"
        env["FLEETMQ_HTTP_BIND"] = f"127.0.0.1:{self.front.http_port}"
        for name in HAPROXY_NODES:
            node = nodes[name]
            env[f"FLEETMQ_{name.upper()}_MQTT"] = f"{node.host}:{node.port}"
            env[f"FLEETMQ_{name.upper()}_HTTP"] = f"{node.http_host}:{node.http_port}"
        self.log_path = workdir / "haproxy.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(HAPROXY_CFG)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(workdir))

    def wait_ready(self, timeout: float = 20.0):
        """Until HAProxy answers `/readyz` through a node it checked healthy."""
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited {self.proc.returncode}:\n{self.log()}")
            return get(self.front.http_host, self.front.http_port, "/readyz")[0] == 200
        wait_for(ready, timeout, "haproxy serving /readyz")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Cluster:
    """redis-server plus named fleetmq nodes sharing it."""

    def __init__(self, binary: pathlib.Path, workdir: pathlib.Path, redis_cluster: bool = False):
        self.binary = binary
        self.workdir = workdir
        # One redis-server, or a 3-master Redis Cluster (`--redis-cluster`).
        self.redis = (RedisCluster.start(workdir / "redis-cluster") if redis_cluster
                      else RedisProcess.start(workdir))
        self.nodes: Dict[str, BrokerProcess] = {}
        self.haproxy: Optional[Haproxy] = None

    def start_node(self, name: str, *extra: str) -> BrokerProcess:
        workdir = self.workdir / name
        workdir.mkdir(exist_ok=True)
        node = BrokerProcess.start(
            self.binary,
            ["--cluster", "--node-id", name, *redis_flags(self.redis), *extra],
            workdir)
        self.nodes[name] = node
        return node

    def start_haproxy(self) -> Haproxy:
        self.haproxy = Haproxy(self.nodes, self.workdir)
        self.haproxy.wait_ready()
        return self.haproxy

    def listed(self, node: BrokerProcess) -> List[str]:
        """The node ids `GET /api/v1/cluster` of `node` lists ([] when it does not answer)."""
        status, body = get(node.http_host, node.http_port, "/api/v1/cluster")
        return sorted(n["id"] for n in body["nodes"]) if status == 200 else []

    def wait_nodes(self, names, timeout: float = 15.0, on: Optional[List[str]] = None):
        """Until every node of `on` (default: every one alive) lists exactly `names`."""
        want = sorted(names)
        watchers = [self.nodes[n] for n in (on or names)]
        wait_for(lambda: all(self.listed(w) == want for w in watchers), timeout,
                 f"the cluster listing {want}")

    def redis_reply(self, *words: str) -> Optional[str]:
        """One command's reply (first line), through redis-cli following a cluster's
        redirections; None for an empty reply."""
        lines = self.redis.cli(tuple(words))
        return lines[0] if lines and lines[0] else None

    def hget(self, key: str, field: str) -> Optional[str]:
        """One hash field, through redis-cli (following a cluster's redirections)."""
        lines = self.redis.cli(("HGET", key, field))
        return lines[0] if lines and lines[0] else None

    def restart_redis(self):
        """Starts Redis again on the port(s) it had (after `redis.stop()`), empty."""
        if isinstance(self.redis, RedisCluster):
            self.redis.restart()
            return
        port = self.redis.port
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis = RedisProcess(proc, port)
        wait_for(lambda: proc.poll() is not None or self.redis.ping(), 10, "redis PONG again")
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server did not start again on port {port}")

    def logs(self) -> str:
        parts = [f"--- node {n} (tail)\n" + "\n".join(b.log().splitlines()[-60:])
                 for n, b in self.nodes.items()]
        if self.haproxy is not None:
            parts.append("--- haproxy\n" + self.haproxy.log()[-4000:])
        return "\n".join(parts)

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.nodes.values():
            node.stop()
        self.redis.stop()


def readiness(node: BrokerProcess) -> Optional[str]:
    """`status` of the node's `/readyz`."""
    status, body = get(node.http_host, node.http_port, "/readyz")
    return body.get("status") if isinstance(body, dict) else None


__all__ = ["Cluster", "Endpoint", "Haproxy", "get", "readiness"]
