"""MQTT on every listener (docs/mqtt.md#versions-and-listeners "on every listener",
docs/configuration.md#settings, docs/http-api.md#endpoints): MQTT over WebSocket at `/mqtt` on the
HTTP port and MQTT over TLS (`--mqtts` with `fleetmq certs` certificates), both protocol versions,
talking to plain TCP clients through the same broker."""

import subprocess

import pytest

from harness import BrokerProcess
from mqttc import V311, V5, Client, connected, unique

VERSIONS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_over_websocket(fleetmq, version):
    topic = unique("ws")
    ws = Client((fleetmq.http_host, fleetmq.http_port), unique("ws"), version,
                transport="websockets", ws_path="/mqtt")
    ws.connect()
    ws.subscribe(topic + "/down", 1)
    tcp = connected(fleetmq.addr)
    tcp.subscribe(topic + "/up", 1)
    ws.publish(topic + "/up", b"from-ws", qos=1)
    assert tcp.wait_messages(1)[0].payload == b"from-ws"
    tcp.publish(topic + "/down", b"to-ws", qos=1)
    msg = ws.wait_messages(1)[0]
    assert (msg.topic, msg.payload, msg.qos) == (topic + "/down", b"to-ws", 1)
    ws.disconnect()
    tcp.disconnect()


@pytest.fixture(scope="module")
def tls_broker(fleetmq_path, tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    made = subprocess.run([str(fleetmq_path), "certs", "--out", str(certs)],
                          capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr.decode(errors="replace")
    for name in ("ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"):
        assert (certs / name).is_file(), f"fleetmq certs did not write {name}"
    broker = BrokerProcess.start(fleetmq_path, [
        "--mqtts", "127.0.0.1:0", "--tls-cert", str(certs / "server.pem"),
        "--tls-key", str(certs / "server-key.pem")], certs)
    broker.ca = str(certs / "ca.pem")
    yield broker
    broker.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_over_tls(tls_broker, version):
    assert "mqtts" in tls_broker.listeners, "the listening line names the mqtts address"
    topic = unique("tls")
    secure = Client(tls_broker.listeners["mqtts"], unique("tls"), version, tls_ca=tls_broker.ca)
    secure.connect()
    secure.subscribe(topic, 1)
    plain = connected(tls_broker.addr)
    plain.publish(topic, b"over-tls", qos=1)
    assert secure.wait_messages(1)[0].payload == b"over-tls"
    secure.disconnect()
    plain.disconnect()


def test_tls_listener_refuses_plain_mqtt(tls_broker):
    """A client speaking plain MQTT to the TLS port gets no CONNACK and is closed."""
    import rawmqtt
    raw = rawmqtt.RawClient(tls_broker.listeners["mqtts"])
    raw.send(rawmqtt.connect(unique("plain")))
    packets = raw.wait_closed(timeout=10)
    assert not any(p.type == rawmqtt.CONNACK for p in packets)
    # The TLS listener still serves real TLS clients.
    ok = Client(tls_broker.listeners["mqtts"], unique("tls"), V5, tls_ca=tls_broker.ca)
    ok.connect()
    ok.disconnect()
