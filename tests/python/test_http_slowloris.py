"""Slow HTTP clients (README "Limits"): a client that trickles its request headers one byte at a
time is closed once the header-read timeout (10 s) has passed since it started them, on `--http`
and on `--https`, while other clients are served meanwhile; an idle keep-alive connection is
closed the same way. Bytes keep arriving the whole time, so a timer that restarted on every
read would never fire."""

import json
import socket
import ssl
import time
import urllib.request

import pytest

from harness import BrokerProcess
from security_util import make_certs

HEADER_READ_TIMEOUT = 10.0
# The close comes at the timeout; the margin covers a loaded 2-core machine.
CLOSED_WITHIN = HEADER_READ_TIMEOUT + 15.0


@pytest.fixture(scope="module")
def broker(fleetmq_path, tmp_path_factory):
    work = tmp_path_factory.mktemp("slowloris")
    certs = make_certs(fleetmq_path, work / "certs")
    b = BrokerProcess.start(fleetmq_path, [
        "--https", "127.0.0.1:0", "--tls-cert", certs["server"], "--tls-key",
        certs["server_key"]], work)
    b.ca = certs["ca"]
    yield b
    b.stop()


def trickle_until_closed(sock: socket.socket, head: bytes) -> float:
    """Sends `head`, then one more header byte every 0.5 s; returns the seconds until the server
    closed the connection. Fails if it is still open after CLOSED_WITHIN."""
    started = time.monotonic()
    sock.sendall(head)
    sock.settimeout(0.5)
    filler = b"X-Slow: " + b"a" * 10_000
    i = 0
    while time.monotonic() - started < CLOSED_WITHIN:
        try:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - started
            # hyper may answer 408 before closing; keep reading until the close.
            continue
        except socket.timeout:
            pass
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return time.monotonic() - started
        try:
            sock.sendall(filler[i % len(filler):i % len(filler) + 1])
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return time.monotonic() - started
        i += 1
    pytest.fail(f"a slow request was still open after {CLOSED_WITHIN} s")


def served(url: str, context=None) -> bool:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return resp.status == 200 and json.loads(resp.read())["type"] == "FeatureCollection"


def test_slow_headers_on_http_are_cut_at_the_timeout(broker):
    host, port = broker.listeners["http"]
    sock = socket.create_connection((host, port), timeout=10)
    # While the slow client holds its connection, others are served.
    assert served(f"http://{host}:{port}/api/v1/routes")
    took = trickle_until_closed(sock, b"GET /api/v1/routes HTTP/1.1\r\nHost: x\r\n")
    sock.close()
    assert took >= HEADER_READ_TIMEOUT - 1, f"closed after {took:.1f} s, before the timeout"
    assert served(f"http://{host}:{port}/api/v1/routes")


def test_slow_headers_on_https_are_cut_at_the_timeout(broker):
    _, port = broker.listeners["https"]
    context = ssl.create_default_context(cafile=broker.ca)
    raw = socket.create_connection(("localhost", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert served(f"https://localhost:{port}/api/v1/routes", context)
    took = trickle_until_closed(sock, b"GET /api/v1/routes HTTP/1.1\r\nHost: x\r\n")
    sock.close()
    assert took >= HEADER_READ_TIMEOUT - 1, f"closed after {took:.1f} s, before the timeout"


def test_an_idle_keep_alive_connection_is_closed(broker):
    host, port = broker.listeners["http"]
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        assert chunk, "closed before answering"
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
    started = time.monotonic()
    sock.settimeout(CLOSED_WITHIN)
    rest = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
        assert len(rest) < 1_000_000
    took = time.monotonic() - started
    sock.close()
    assert took < CLOSED_WITHIN, f"idle connection open for {took:.1f} s"
