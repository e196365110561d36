"""MQTT over TLS (docs/security.md#tls, issue 6): the mosquitto clients with `--cafile` and the
certificates of `fleetmq certs`; with a client certificate and `--tls-client-ca` the certificate's
CN is the identity (a driver whose vehicle is the CN may publish `fleet/{CN}/location`, not another
vehicle's); a TLS 1.1 client and an untrusted client certificate are refused. `--https` serves the
bridge over TLS: REST and MQTT over secure WebSocket."""

import json
import ssl
import subprocess
import time
import urllib.request

import pytest

from harness import BrokerProcess, quiet_for, wait_for
from mqttc import V5, reason_value, unique
from security_util import (AuthClient, cert_cn, location, make_certs, mosquitto,
                           untrusted_client_cert, users_file)

OPERATOR = {"name": "ops", "password": "ops-secret", "role": "operator"}


@pytest.fixture(scope="module")
def tls(fleetmq_path, tmp_path_factory):
    """A broker with --mqtts, client-certificate auth and a users file with one operator."""
    work = tmp_path_factory.mktemp("tls")
    certs = make_certs(fleetmq_path, work / "certs")
    users = users_file(fleetmq_path, work / "users.toml", [OPERATOR])
    broker = BrokerProcess.start(fleetmq_path, [
        "--mqtts", "127.0.0.1:0", "--https", "127.0.0.1:0", "--tls-cert", certs["server"],
        "--tls-key",
        certs["server_key"], "--tls-client-ca", certs["ca"], "--users", users], work)
    broker.certs = certs
    broker.work = work
    broker.mqtts_port = broker.listeners["mqtts"][1]
    broker.cn = cert_cn(certs["client"])
    yield broker
    broker.stop()


def operator(broker) -> AuthClient:
    c = AuthClient(broker.addr, unique("ops"), V5, OPERATOR["name"], OPERATOR["password"])
    c.connect()
    return c


def client_cert_args(broker):
    c = broker.certs
    return ["--cafile", c["ca"], "--cert", c["client"], "--key", c["client_key"]]


def test_listening_line_names_mqtts(tls):
    assert tls.listeners["mqtts"][0] == "127.0.0.1" and tls.mqtts_port > 0


def test_mosquitto_pub_with_client_certificate_publishes_as_its_cn(tls):
    """The CN is a driver's vehicle: its own location goes through (processed into
    `vehicles/{CN}`), another vehicle's is refused with PUBACK 0x87 and forwarded nowhere."""
    watcher = operator(tls)
    other = unique("bus")
    watcher.subscribe([(f"vehicles/{tls.cn}", 1), (f"fleet/{other}/#", 1),
                       (f"vehicles/{other}", 1)])
    ok = mosquitto("mosquitto_pub", tls.mqtts_port, [
        *client_cert_args(tls), "-q", "1", "-d", "-t", f"fleet/{tls.cn}/location",
        "-m", location().decode()])
    out = ok.stdout.decode() + ok.stderr.decode()
    assert ok.returncode == 0 and "received CONNACK (0)" in out, out
    assert "failed" not in out, out
    state = wait_for(lambda: [m for m in watcher.payloads(f"vehicles/{tls.cn}")], 10,
                     "the processed state of the CN's vehicle")
    assert tls.cn.encode() in state[0]

    denied = mosquitto("mosquitto_pub", tls.mqtts_port, [
        *client_cert_args(tls), "-q", "1", "-d", "-t", f"fleet/{other}/location",
        "-m", location().decode()])
    out = denied.stdout.decode() + denied.stderr.decode()
    assert "RC:135" in out and "Not authorized" in out, out
    quiet_for(lambda: watcher.payloads(f"fleet/{other}/location")
              + watcher.payloads(f"vehicles/{other}"), 1.0)
    watcher.disconnect()


def test_mosquitto_sub_with_client_certificate_gets_its_pings(tls):
    sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(tls.mqtts_port),
                            "-V", "mqttv5", *client_cert_args(tls), "-q", "1", "-d",
                            "-t", f"fleet/{tls.cn}/ping", "-C", "1", "-W", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ops = operator(tls)
        marker = unique("ping").encode()
        # Until the subscription is in place a ping is lost: repeat until one arrives.
        deadline = time.monotonic() + 15
        while sub.poll() is None and time.monotonic() < deadline:
            ops.publish(f"fleet/{tls.cn}/ping", marker, qos=1)
            try:
                sub.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        out, err = sub.communicate(timeout=5)
        assert sub.returncode == 0, err.decode()
        assert marker in out, out
        ops.disconnect()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_mosquitto_sub_with_client_certificate_refused_elsewhere(tls):
    """A driver (by certificate) may not subscribe to other vehicles' state: SUBACK 0x87."""
    sub = mosquitto("mosquitto_sub", tls.mqtts_port, [
        *client_cert_args(tls), "-t", "vehicles/#", "-C", "1", "-W", "5", "-d"])
    out = sub.stdout.decode() + sub.stderr.decode()
    assert "received SUBACK" in out and "denied" in out.lower(), out


def test_server_only_tls_with_password(tls):
    """`--cafile` alone (no client certificate): the users file authenticates over TLS."""
    topic = f"ops/{unique('t')}"
    good = mosquitto("mosquitto_pub", tls.mqtts_port, [
        "--cafile", tls.certs["ca"], "-u", OPERATOR["name"], "-P", OPERATOR["password"],
        "-q", "1", "-d", "-t", topic, "-m", "hello"])
    out = good.stdout.decode() + good.stderr.decode()
    assert good.returncode == 0 and "received PUBACK" in out and "failed" not in out, out
    # Anonymous over TLS is refused: authentication is configured.
    anon = mosquitto("mosquitto_pub", tls.mqtts_port, [
        "--cafile", tls.certs["ca"], "-q", "1", "-t", topic, "-m", "x"])
    assert anon.returncode != 0
    msg = (anon.stdout + anon.stderr).decode().lower()
    assert "not authorized" in msg or "bad user" in msg, msg


def test_wrong_ca_does_not_trust_the_server(tls):
    """The client checks the server: a CA that did not sign it fails the handshake."""
    evil = untrusted_client_cert(tls.work, "someone")
    bad = mosquitto("mosquitto_pub", tls.mqtts_port, [
        "--cafile", evil["ca"], "-u", OPERATOR["name"], "-P", OPERATOR["password"],
        "-t", "x", "-m", "x"])
    assert bad.returncode != 0


def test_untrusted_client_certificate_is_refused(tls):
    evil = untrusted_client_cert(tls.work, tls.cn)
    bad = mosquitto("mosquitto_pub", tls.mqtts_port, [
        "--cafile", tls.certs["ca"], "--cert", evil["cert"], "--key", evil["key"],
        "-q", "1", "-d", "-t", f"fleet/{tls.cn}/location", "-m", location().decode()])
    out = bad.stdout.decode() + bad.stderr.decode()
    assert bad.returncode != 0 and "received CONNACK (0)" not in out, out
    # Same command with the trusted certificate: the refusal was about the certificate.
    good = mosquitto("mosquitto_pub", tls.mqtts_port, [
        *client_cert_args(tls), "-q", "1", "-d", "-t", f"fleet/{tls.cn}/location",
        "-m", location().decode()])
    assert good.returncode == 0, good.stderr.decode()


def test_untrusted_client_certificate_refused_with_paho(tls):
    evil = untrusted_client_cert(tls.work, "intruder")
    c = AuthClient(("localhost", tls.mqtts_port), unique("evil"), V5, tls_ca=tls.certs["ca"],
                   certfile=evil["cert"], keyfile=evil["key"])
    with pytest.raises(Exception):
        c.connect(timeout=5)
    if c.paho is not None:
        c.paho.loop_stop()
    assert c.connack is None or c.connack[1].value >= 0x80


def s_client(port: int, version_flag: str, ca: str) -> str:
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version_flag,
                          "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", ca],
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


def test_tls_1_1_client_is_refused(tls):
    refused = s_client(tls.mqtts_port, "-tls1_1", tls.certs["ca"])
    # The server answered the TLS 1.1 ClientHello with an alert (not a client-side refusal).
    assert "SSL alert number" in refused, refused
    assert "New, TLSv1.1" not in refused, refused
    # The same client offering TLS 1.2 and 1.3 is served.
    assert "New, TLSv1.2" in s_client(tls.mqtts_port, "-tls1_2", tls.certs["ca"])
    assert "New, TLSv1.3" in s_client(tls.mqtts_port, "-tls1_3", tls.certs["ca"])


def test_mqtts_needs_certificate_and_key(fleetmq_path, tmp_path):
    proc = subprocess.run([str(fleetmq_path), "serve", "--mqtt", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", "--mqtts", "127.0.0.1:0"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert "--tls-cert" in (proc.stdout + proc.stderr).decode(errors="replace")
    missing = tmp_path / "missing.pem"
    proc = subprocess.run([str(fleetmq_path), "serve", "--mqtt", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", "--mqtts", "127.0.0.1:0", "--tls-cert", str(missing),
                           "--tls-key", str(missing)], capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert "missing.pem" in (proc.stdout + proc.stderr).decode(errors="replace")


def test_https_serves_the_bridge(tls):
    _, port = tls.listeners["https"]
    context = ssl.create_default_context(cafile=tls.certs["ca"])
    with urllib.request.urlopen(f"https://localhost:{port}/api/v1/routes", context=context,
                                timeout=10) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())["type"] == "FeatureCollection"
    # A client that does not trust the CA refuses the server.
    strict = ssl.create_default_context()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"https://localhost:{port}/api/v1/routes", context=strict,
                               timeout=10)


def test_mqtt_over_secure_websocket(tls):
    _, port = tls.listeners["https"]
    topic = f"wss/{unique('t')}"
    wss = AuthClient(("localhost", port), unique("wss"), V5, OPERATOR["name"],
                     OPERATOR["password"], tls_ca=tls.certs["ca"], transport="websockets")
    wss.connect()
    wss.subscribe(topic, 1)
    plain = operator(tls)
    plain.publish(topic, b"to-wss", qos=1)
    assert wss.wait_messages(1)[0].payload == b"to-wss"
    assert reason_value(wss.publish(topic + "/up", b"x", qos=1)[0]) < 0x80
    wss.disconnect()
    plain.disconnect()
