"""Processes of the cluster lease suite (README "Cluster: vehicle ownership"): one redis-server,
three `fleetmq serve --cluster` nodes sharing it, and HAProxy in TCP mode in front of the nodes'
MQTT listeners, each on a free loopback port; plus reading the leases back from Redis.

The HAProxy configuration is written here (round robin, health checks every 200 ms, a refused
connection re-dispatched to another node at once), a minimal stand-in for `deploy/haproxy.cfg`.

Nothing here sleeps for synchronisation; waiting is `harness.wait_for`.
"""

import pathlib
import shutil
import socket
import subprocess
from typing import Dict, List, Optional, Tuple

from harness import BrokerProcess, RedisProcess, free_port, stop_child, wait_for
from redis_cluster_util import redis_flags

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
NODES = ("n1", "n2", "n3")


def leases(redis, vehicles: List[str]) -> Dict[str, Tuple[str, int, int]]:
    """vehicle → (lease_owner or "", lease_epoch or 0, lease_until or 0) as stored."""
    lines = redis.cli(*[("HMGET", f"fleetmq:vehicle:{v}", "lease_owner", "lease_epoch",
                                "lease_until") for v in vehicles])
    assert len(lines) == 3 * len(vehicles), lines[:6]
    out = {}
    for i, v in enumerate(vehicles):
        owner, epoch, until = lines[3 * i:3 * i + 3]
        out[v] = (owner, int(epoch or 0), int(until or 0))
    return out


def redis_now_ms(redis) -> int:
    secs, micros = redis.cli(("TIME",))
    return int(secs) * 1000 + int(micros) // 1000


class Haproxy:
    """`haproxy -db` balancing TCP over `backends`; stopped with SIGTERM."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port
        self.addr = ("127.0.0.1", port)

    @classmethod
    def start(cls, backends: Dict[str, Tuple[str, int]], workdir: pathlib.Path) -> "Haproxy":
        port = free_port()
        servers = "\n".join(
            f"    server {name} {host}:{p} check inter 200ms fall 2 rise 1"
            for name, (host, p) in backends.items())
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 4096

defaults
    mode tcp
    timeout connect 250ms
    timeout client 1h
    timeout server 1h
    retries 3
    option redispatch 1

frontend mqtt
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance roundrobin
{servers}
""")
        proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = cls(proc, port)
        wait_for(lambda: proc.poll() is not None or server._accepts(), 10, "haproxy listening")
        assert proc.poll() is None, "haproxy exited at start"
        return server

    def _accepts(self) -> bool:
        try:
            socket.create_connection(self.addr, timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        stop_child(self.proc)


class Cluster:
    """Three fleetmq nodes (`--cluster --node-id n1..n3`) + HAProxy on `redis`: a redis-server
    or a Redis Cluster (`redis_cluster_util.store`), which the caller stops."""

    def __init__(self, binary: pathlib.Path, workdir: pathlib.Path, redis,
                 extra: Tuple[str, ...] = ()):
        self.redis = redis
        self.nodes: Dict[str, BrokerProcess] = {}
        self.haproxy: Optional[Haproxy] = None
        try:
            for name in NODES:
                data = workdir / name
                data.mkdir(exist_ok=True)
                self.nodes[name] = BrokerProcess.start(binary, [
                    *redis_flags(self.redis), "--cluster", "--node-id", name,
                    "--data-dir", str(data), *extra], workdir)
            self.haproxy = Haproxy.start({n: b.addr for n, b in self.nodes.items()}, workdir)
        except BaseException:
            self.stop()
            raise

    @property
    def addr(self) -> Tuple[str, int]:
        """Where drivers connect: HAProxy."""
        return self.haproxy.addr

    def leases(self, vehicles: List[str]) -> Dict[str, Tuple[str, int, int]]:
        return leases(self.redis, vehicles)

    def owners(self, vehicles: List[str]) -> Dict[str, str]:
        """vehicle → node holding a live lease ("" when none is live)."""
        now = redis_now_ms(self.redis)
        return {v: (owner if until > now else "")
                for v, (owner, _, until) in self.leases(vehicles).items()}

    def stop(self):
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.nodes.values():
            node.stop()
