"""Processes under test (fleetmq, redis-server) and waiting for conditions with deadlines.

Nothing here sleeps for a fixed time to synchronise: `wait_for` polls a condition until it holds
or its deadline passes, and process start-up waits for the process to say it is ready.
"""

import collections
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

T = TypeVar("T")

# `fleetmq listening mqtt=IP:PORT http=IP:PORT` and possibly more `name=IP:PORT` (mqtts=...).
LISTENING = re.compile(r"^fleetmq listening ((?:\s*\w+=\S+:\d+)+)\s*$")
ADDR = re.compile(r"(\w+)=(?:\[([^\]]+)\]|([^\s:\[]+)):(\d+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class Timeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(condition: Callable[[], T], timeout: float = 5.0, what: str = "condition",
             interval: float = 0.02) -> T:
    """Polls `condition` until it returns a truthy value, which is returned; raises Timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def quiet_for(condition: Callable[[], object], seconds: float, interval: float = 0.02) -> None:
    """Asserts that `condition` stays falsy for `seconds` (for checks that something does NOT
    happen within a protocol-defined time, e.g. a will delay); returns early with a failure."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            raise AssertionError(f"expected nothing for {seconds} s, got {value!r}")
        time.sleep(interval)


# Ports for servers that cannot bind port 0 themselves (redis-server, PostgreSQL, HAProxy, a
# broker restarted on a port chosen in advance). Binding port 0 and closing it is racy: the kernel
# hands out port-0 binds *and* every outgoing connection's source port from the ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range), so under pytest-xdist another worker's free_port(), or
# any test's next outgoing connection, can take the port before our server binds it. So these
# ports come from below the ephemeral range (from PORT_FLOOR up), where the kernel never picks on
# its own; each xdist worker (PYTEST_XDIST_WORKER gw0, gw1, ...) owns a slice of its own; a process
# never hands out the same port twice; and each candidate is still checked by binding it (another
# program on the machine may use it).
#
# A port's owner is decided by (port - PORT_FLOOR) % BUS_OFFSET, so a Redis Cluster node's port p
# and its bus port p + BUS_OFFSET always belong to the same worker (`free_port_pair`).
PORT_FLOOR = 10000
BUS_OFFSET = 10000
_handed_out: set = set()
_port_lock = threading.Lock()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _worker() -> Tuple[int, int]:
    """(this xdist worker's index, the number of workers); (0, 1) without xdist."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    index = int(match.group(1)) if match else 0
    try:
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        count = 1
    return index % count, count


def _owned(port: int) -> bool:
    index, count = _worker()
    return ((port - PORT_FLOOR) % BUS_OFFSET) * count // BUS_OFFSET == index


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    """The old way, when the ephemeral range leaves no room below it."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            return port
    raise RuntimeError("no free loopback port")


def free_port() -> int:
    """A loopback TCP port that is free now, below the ephemeral range, in this xdist worker's
    slice, and never returned before in this process (for servers that cannot bind port 0)."""
    with _port_lock:
        # Downwards from the top, so that the low ports stay for `free_port_pair`.
        for port in range(_ephemeral_start() - 1, PORT_FLOOR - 1, -1):
            if port not in _handed_out and _owned(port) and _bindable(port):
                _handed_out.add(port)
                return port
        port = _kernel_port()
        _handed_out.add(port)
        return port


def free_port_pair(offset: int = BUS_OFFSET) -> int:
    """A port p as `free_port()` whose p + offset is free too (a Redis Cluster node's bus port);
    both are below the ephemeral range and neither is handed out again in this process."""
    with _port_lock:
        for port in range(PORT_FLOOR, _ephemeral_start() - offset):
            if (port not in _handed_out and port + offset not in _handed_out and _owned(port)
                    and _owned(port + offset) and _bindable(port) and _bindable(port + offset)):
                _handed_out.update((port, port + offset))
                return port
        for _ in range(100):
            port = _kernel_port()
            if port + offset <= 65535 and port + offset not in _handed_out \
                    and _bindable(port + offset):
                _handed_out.update((port, port + offset))
                return port
    raise RuntimeError("no free loopback port pair")


class _LineReader:
    """Drains a pipe on a thread so the child never blocks on a full pipe; keeps the last lines."""

    def __init__(self, stream, keep: int = 400):
        self.lines: collections.deque = collections.deque(maxlen=keep)
        self.first_match: Optional[re.Match] = None
        self.closed = False
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.first_match is None:
                match = LISTENING.match(line)
                if match:
                    self.first_match = match
        self.closed = True

    def text(self) -> str:
        return "\n".join(self.lines)


class BrokerProcess:
    """A running `fleetmq serve` on loopback port 0."""

    _recent: collections.deque = collections.deque(maxlen=4)

    def __init__(self, proc: subprocess.Popen, stdout: _LineReader, stderr: _LineReader,
                 listeners: Dict[str, Tuple[str, int]], args: List[str]):
        self.proc = proc
        self._stdout = stdout
        self._stderr = stderr
        #: Every listener the line names: {"mqtt": (host, port), "http": ..., "mqtts": ...}.
        self.listeners = listeners
        self.host, self.port = listeners["mqtt"]
        self.http_host, self.http_port = listeners["http"]
        self.args = args

    @classmethod
    def start(cls, binary: pathlib.Path, extra: List[str], workdir: pathlib.Path) -> "BrokerProcess":
        args = [str(binary), "serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", *extra]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=str(workdir))
        out = _LineReader(proc.stdout)
        err = _LineReader(proc.stderr)
        cls._recent.append((args, out, err))
        deadline = time.monotonic() + START_TIMEOUT
        while out.first_match is None:
            if proc.poll() is not None or time.monotonic() >= deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(
                    f"fleetmq did not print its listening line (exit {proc.returncode})\n"
                    f"args: {args}\nstdout:\n{out.text()}\nstderr:\n{err.text()}")
            time.sleep(0.01)
        listeners = {name: (v6 or v4, int(port))
                     for name, v6, v4, port in ADDR.findall(out.first_match.group(1))}
        if "mqtt" not in listeners or "http" not in listeners:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"listening line without mqtt= and http=: {out.first_match.group(0)}")
        return cls(proc, out, err, listeners, args)

    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self._stderr.text()

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then waits for the exit code (SIGKILL if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self):
        self.terminate()

    @classmethod
    def recent_logs(cls) -> str:
        parts = []
        for args, out, err in cls._recent:
            parts.append(f"$ {' '.join(args)}\n--- stdout\n{out.text()}\n--- stderr (tail)\n"
                         + "\n".join(list(err.lines)[-80:]))
        return "\n\n".join(parts)


class RedisProcess:
    """A redis-server of the test's own, on a free loopback port, with persistence off."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/"

    @classmethod
    def start(cls, workdir: pathlib.Path) -> "RedisProcess":
        last_error = None
        for _ in range(5):
            port = free_port()
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            server = cls(proc, port)
            try:
                wait_for(lambda: proc.poll() is not None or server.ping(), 10, "redis PONG")
            except Timeout as e:
                last_error = e
            if proc.poll() is None and server.ping():
                return server
            server.stop()
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def command(self, *words: str) -> bytes:
        """Sends one inline command and returns the raw reply's first line(s)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            payload = b"".join(
                b"$%d\r\n%s\r\n" % (len(w.encode()), w.encode()) for w in words)
            s.sendall(b"*%d\r\n" % len(words) + payload)
            return s.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def cli(self, *commands) -> List[str]:
        """Runs commands (tuples of words) through one `redis-cli --raw`; one output line per
        reply line (an absent field is an empty line)."""
        script = "".join(" ".join(_cli_quote(w) for w in c) + "\n" for c in commands)
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw"], input=script.encode(),
                             capture_output=True, timeout=20)
        return out.stdout.decode().splitlines()

    def stop(self):
        stop_child(self.proc)


def _cli_quote(word) -> str:
    return '"' + str(word).replace("\\", "\\\\").replace('"', '\\"') + '"'


def stop_child(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
