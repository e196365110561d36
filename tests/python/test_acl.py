"""`--acl FILE` topic rules (SPEC §9 via §3): a denied subscription gets SUBACK 0x87 (3.1.1: 0x80)
with a reason string, a denied publish gets PUBACK 0x87 and is not delivered; rules for every
client and per client id, with `%c` substitution; a deny wins."""

import pytest

from mqttc import V311, V5, Client, connected, prop, reason_value, unique

ACL = """
[[rule]]
topic = "secret/#"
access = "deny"

[[rule]]
client = "mallory"
topic = "private/#"
access = "deny"

[[rule]]
topic = "home/%c/locked"
access = "deny"

[[rule]]
topic = "open/#"
access = "readwrite"

[[rule]]
topic = "open/closed"
access = "deny"
"""


@pytest.fixture(scope="module")
def acl_broker(fleetmq_path, tmp_path_factory):
    from harness import BrokerProcess
    workdir = tmp_path_factory.mktemp("acl")
    path = workdir / "acl.toml"
    path.write_text(ACL)
    broker = BrokerProcess.start(fleetmq_path, ["--acl", str(path)], workdir)
    yield broker
    broker.stop()


def test_denied_subscribe_v5(acl_broker):
    c = connected(acl_broker.addr)
    codes, properties = c.subscribe([("secret/plans", 1), ("public/news", 1)])
    assert [reason_value(x) for x in codes] == [0x87, 1]
    assert prop(properties, "ReasonString"), "a reason string on the negative SUBACK"
    c.disconnect()


def test_denied_subscribe_v311(acl_broker):
    c = connected(acl_broker.addr, protocol=V311)
    codes, _ = c.subscribe([("secret/#", 1), ("public/#", 0)])
    assert [reason_value(x) for x in codes] == [0x80, 0]
    c.disconnect()


def test_denied_publish_v5(acl_broker):
    watcher = connected(acl_broker.addr)
    watcher.subscribe("#", 1)
    pub = connected(acl_broker.addr)
    reason, properties = pub.publish("secret/plans", b"leak", qos=1)
    assert reason_value(reason) == 0x87
    assert prop(properties, "ReasonString"), "a reason string on the negative PUBACK"
    pub.publish("secret/plans", b"leak0", qos=0)
    pub.publish("public/ok", b"marker", qos=1)
    before = watcher.wait_payload(b"marker")
    assert [m.payload for m in before] == [], "denied publishes are not delivered"
    watcher.disconnect()
    pub.disconnect()


def test_denied_publish_v311_not_delivered(acl_broker):
    watcher = connected(acl_broker.addr)
    watcher.subscribe("#", 1)
    pub = connected(acl_broker.addr, protocol=V311)
    pub.publish("secret/x", b"leak", qos=1)  # 3.1.1 has no negative PUBACK; it is dropped
    pub.publish("public/ok", b"marker", qos=1)
    assert watcher.wait_payload(b"marker") == []
    watcher.disconnect()
    pub.disconnect()


def test_rule_by_client_id(acl_broker):
    topic = "private/" + unique("p")
    mallory = Client(acl_broker.addr, "mallory", V5)
    mallory.connect()
    codes, _ = mallory.subscribe(topic, 1)
    assert [reason_value(x) for x in codes] == [0x87]
    alice = connected(acl_broker.addr, client_id=unique("alice"))
    codes, _ = alice.subscribe(topic, 1)
    assert [reason_value(x) for x in codes] == [1], "the rule is only for client mallory"
    reason, _ = mallory.publish(topic, b"x", qos=1)
    assert reason_value(reason) == 0x87
    mallory.disconnect()
    alice.disconnect()


def test_client_id_substitution(acl_broker):
    me = unique("owner")
    c = connected(acl_broker.addr, client_id=me)
    codes, _ = c.subscribe([(f"home/{me}/locked", 1), ("home/someone-else/locked", 1)])
    assert [reason_value(x) for x in codes] == [0x87, 1]
    c.disconnect()


def test_deny_wins_over_allow(acl_broker):
    c = connected(acl_broker.addr)
    codes, _ = c.subscribe([("open/closed", 1), ("open/door", 1)])
    assert [reason_value(x) for x in codes] == [0x87, 1]
    reason, _ = c.publish("open/closed", b"x", qos=1)
    assert reason_value(reason) == 0x87
    reason, _ = c.publish("open/door", b"x", qos=1)
    assert reason_value(reason) in (0, 0x10)
    c.disconnect()


def test_bad_acl_file_exits_2(fleetmq_path, tmp_path):
    import subprocess
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\ntopic = \"x\"\naccess = \"sometimes\"\n")
    proc = subprocess.run([str(fleetmq_path), "serve", "--mqtt", "127.0.0.1:0", "--http",
                           "127.0.0.1:0", "--acl", str(bad)], capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert "bad.toml" in (proc.stderr + proc.stdout).decode(errors="replace")
