"""Helpers for the security suites (docs/security.md): certificates from `fleetmq certs`, a users
file from `fleetmq passwd`, HS256 tokens made by hand (hmac + base64, no PyJWT), valid location
payloads, and a paho client that logs in with a user name/password or a client certificate."""

import base64
import hashlib
import hmac
import json
import pathlib
import subprocess
import time
from typing import Dict, List, Optional, Sequence

from mqttc import Client

# Cairns, where the bundled routes are.
LAT, LON = -16.9203, 145.7710


def make_certs(fleetmq_path: pathlib.Path, out: pathlib.Path) -> Dict[str, str]:
    """`fleetmq certs --out DIR`; returns {"ca": path, "server": ..., "server_key": ..., ...}."""
    made = subprocess.run([str(fleetmq_path), "certs", "--out", str(out)],
                          capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr.decode(errors="replace")
    names = {"ca": "ca.pem", "server": "server.pem", "server_key": "server-key.pem",
             "client": "client.pem", "client_key": "client-key.pem"}
    paths = {k: str(out / v) for k, v in names.items()}
    for p in paths.values():
        assert pathlib.Path(p).is_file(), f"fleetmq certs did not write {p}"
    return paths


def cert_cn(pem: str) -> str:
    """The subject CN of a PEM certificate, read by openssl."""
    out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-subject",
                          "-nameopt", "multiline"], capture_output=True, timeout=30, check=True)
    for line in out.stdout.decode().splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "commonName":
            return value.strip()
    raise AssertionError(f"no CN in {pem}")


def untrusted_client_cert(out: pathlib.Path, cn: str) -> Dict[str, str]:
    """A self-made CA (not the broker's) and a client certificate it signed, by openssl."""
    ca_key, ca, key, csr, cert = (str(out / n) for n in
                                  ("evil-ca-key.pem", "evil-ca.pem", "evil-key.pem",
                                   "evil.csr", "evil.pem"))
    run = lambda *args: subprocess.run(list(args), capture_output=True, timeout=60, check=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Evil CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
    ext = out / "evil-ext.cnf"
    ext.write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


def hash_password(fleetmq_path: pathlib.Path, password: str) -> str:
    """An argon2 hash from `fleetmq passwd` (password on stdin)."""
    out = subprocess.run([str(fleetmq_path), "passwd"], input=(password + "\n").encode(),
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode().strip().splitlines()[-1].strip()


def users_file(fleetmq_path: pathlib.Path, path: pathlib.Path, users: Sequence[dict]) -> str:
    """Writes a users file; each user is {"name", "password", "role", optional "vehicle"}."""
    blocks = []
    for u in users:
        lines = ["[[user]]", f'name = "{u["name"]}"',
                 f'password_hash = "{hash_password(fleetmq_path, u["password"])}"',
                 f'role = "{u["role"]}"']
        if "vehicle" in u:
            lines.append(f'vehicle = "{u["vehicle"]}"')
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")
    return str(path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret: str, claims: dict) -> str:
    """A compact JWS (HS256) over `claims`, as RFC 7519 describes."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def token(secret: str, sub: str, role: str, ttl: int = 600, **extra) -> str:
    return hs256(secret, {"sub": sub, "role": role, "exp": int(time.time()) + ttl, **extra})


def location(**extra) -> bytes:
    """A valid location update at the current time."""
    return json.dumps({"lat": LAT, "lon": LON, "ts": int(time.time() * 1000), **extra}).encode()


class AuthClient(Client):
    """A test client that logs in with `username`/`password` and/or a client certificate."""

    def __init__(self, addr, client_id: str, protocol: int, username: Optional[str] = None,
                 password: Optional[str] = None, tls_ca: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 transport: str = "tcp"):
        super().__init__(addr, client_id, protocol, transport=transport)
        self.username = username
        self.password = password
        self.tls_files = (tls_ca, certfile, keyfile)

    def _new_paho(self, clean_start: bool):
        client = super()._new_paho(clean_start)
        if self.username is not None or self.password is not None:
            client.username_pw_set(self.username or "", self.password)
        ca, certfile, keyfile = self.tls_files
        if ca is not None:
            client.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile)
        return client


def mosquitto(tool: str, port: int, args: List[str], timeout: float = 15
              ) -> subprocess.CompletedProcess:
    """Runs `mosquitto_pub`/`mosquitto_sub` against 127.0.0.1:port with `args`."""
    return subprocess.run([tool, "-h", "localhost", "-p", str(port), "-V", "mqttv5", *args],
                          capture_output=True, timeout=timeout)


def raw_login(addr, username: str, password: str, v5: bool = True) -> int:
    """CONNECT with a user name and password over a raw socket (fast: no client library loop);
    the CONNACK reason code (3.1.1: the return code), or -1 when closed without one."""
    import struct

    import rawmqtt
    flags = 0x02 | 0x40 | 0x80
    body = rawmqtt.utf8("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack(">H", 30)
    if v5:
        body += rawmqtt.encode_properties(None)
    body += rawmqtt.utf8(f"raw-{time.monotonic_ns()}") + rawmqtt.utf8(username)
    body += rawmqtt.utf8(password)
    raw = rawmqtt.RawClient(addr, v5=v5)
    try:
        raw.send(rawmqtt.packet(rawmqtt.CONNECT, 0, body))
        connack = raw.recv(10)
        return -1 if connack is None else connack.reason
    finally:
        raw.close()
