"""Debian's `mosquitto_pub` / `mosquitto_sub` against fleetmq (issue 2): 3.1.1 and 5.0,
QoS 0/1/2, retained messages, a will on an abnormal close (SIGKILL) and none on a clean exit.

`mosquitto_sub -d` prints "Subscribed (mid: N)" once its SUBACK arrives, which is when a test
may publish; every client runs with `-W` so nothing can hang."""

import shutil
import signal
import subprocess
import threading
import time
from typing import List

import pytest

from harness import wait_for
from mqttc import connected, unique

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_sub") is None,
                                reason="mosquitto-clients not installed (scripts/setup.sh)")

VERSIONS = [pytest.param("mqttv311", id="v311"), pytest.param("mqttv5", id="v5")]
FORMAT = "%r|%q|%t|%p"


class Sub:
    """A running mosquitto_sub whose stdout lines are collected on a thread."""

    def __init__(self, broker, topic: str, *extra: str, version="mqttv311", qos=0, count=None,
                 timeout=15, fmt=FORMAT):
        # stdbuf: mosquitto_sub's debug lines are block-buffered into a pipe otherwise.
        args = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version,
                "-t", topic, "-q", str(qos), "-d", "-F", fmt, "-W", str(timeout), *extra]
        if count is not None:
            args += ["-C", str(count)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait_subscribed(self, timeout=10):
        wait_for(lambda: any("Subscribed (mid" in line for line in self.lines) or
                 self.proc.poll() is not None, timeout, "mosquitto_sub's SUBACK")
        assert any("Subscribed (mid" in line for line in self.lines), "\n".join(self.lines)

    def messages(self) -> List[tuple]:
        """(retain, qos, topic, payload) of every message printed so far."""
        out = []
        for line in self.lines:
            parts = line.split("|", 3)
            if len(parts) == 4 and parts[0] in ("0", "1") and parts[1] in ("0", "1", "2"):
                out.append((parts[0] == "1", int(parts[1]), parts[2], parts[3]))
        return out

    def wait_exit(self, timeout=15) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(10)


def pub(broker, topic: str, payload: str, *extra: str, version="mqttv311", qos=0):
    args = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t",
            topic, "-m", payload, "-q", str(qos), *extra]
    result = subprocess.run(args, capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub(fleetmq, version, qos):
    topic = unique(f"mosq{qos}")
    sub = Sub(fleetmq, topic, version=version, qos=qos, count=3)
    sub.wait_subscribed()
    for i in range(3):
        pub(fleetmq, topic, f"hello-{i}", version=version, qos=qos)
    assert sub.wait_exit() == 0, "\n".join(sub.lines)
    assert sub.messages() == [(False, qos, topic, f"hello-{i}") for i in range(3)]


@pytest.mark.parametrize("version", VERSIONS)
def test_retained(fleetmq, version):
    topic = unique("mosq-retained")
    pub(fleetmq, topic, "kept", "-r", version=version, qos=1)
    sub = Sub(fleetmq, topic, version=version, qos=1, count=1)
    assert sub.wait_exit() == 0
    assert sub.messages() == [(True, 1, topic, "kept")]
    # Clear it: an empty retained message; a later subscriber gets nothing retained.
    pub(fleetmq, topic, "", "-r", version=version, qos=1)
    sub = Sub(fleetmq, topic, "--retained-only", version=version, qos=1, timeout=2)
    sub.wait_subscribed()
    code = sub.wait_exit()
    assert sub.messages() == []
    assert code in (0, 27), f"-W timeout exit code, got {code}"


@pytest.mark.parametrize("version", VERSIONS)
def test_will_on_sigkill(fleetmq, version):
    will_topic = unique("mosq-will")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(will_topic, 1)
    dying = Sub(fleetmq, unique("idle"), "--will-topic", will_topic, "--will-payload", "lost",
                "--will-qos", "1", version=version, timeout=30)
    dying.wait_subscribed()
    dying.kill(signal.SIGKILL)
    msg = watcher.wait_messages(1)[0]
    assert (msg.topic, msg.payload) == (will_topic, b"lost")
    watcher.disconnect()


@pytest.mark.parametrize("version", VERSIONS)
def test_no_will_on_clean_exit(fleetmq, version):
    will_topic = unique("mosq-nowill")
    topic = unique("mosq-exit")
    watcher = connected(fleetmq.addr)
    watcher.subscribe(will_topic, 1)
    polite = Sub(fleetmq, topic, "--will-topic", will_topic, "--will-payload", "lost",
                 version=version, count=1)
    polite.wait_subscribed()
    pub(fleetmq, topic, "bye", version=version)
    assert polite.wait_exit() == 0  # -C 1: DISCONNECT after one message
    pub(fleetmq, will_topic, "marker", version="mqttv5", qos=1)
    assert watcher.wait_payload(b"marker") == []
    watcher.disconnect()


def test_v5_properties_via_mosquitto_pub(fleetmq):
    topic = unique("mosq-props")
    sub = Sub(fleetmq, topic, version="mqttv5", count=1, fmt="%t|%p|%P")
    sub.wait_subscribed()
    pub(fleetmq, topic, "with-props", "-D", "publish", "user-property", "fleet", "mq",
        version="mqttv5")
    assert sub.wait_exit() == 0
    assert any(line == f"{topic}|with-props|fleet:mq" for line in sub.lines), sub.lines


def test_many_messages_quickly(fleetmq):
    topic = unique("mosq-many")
    sub = Sub(fleetmq, topic, version="mqttv5", qos=1, count=200, timeout=30)
    sub.wait_subscribed()
    start = time.monotonic()
    lines = "\n".join(f"n{i}" for i in range(200)) + "\n"
    result = subprocess.run(["mosquitto_pub", "-h", fleetmq.host, "-p", str(fleetmq.port), "-V",
                             "mqttv5", "-t", topic, "-q", "1", "-l"], input=lines.encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sub.wait_exit() == 0
    assert [m[3] for m in sub.messages()] == [f"n{i}" for i in range(200)]
    assert time.monotonic() - start < 20
