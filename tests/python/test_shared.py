"""Shared subscriptions `$share/GROUP/FILTER` (docs/mqtt.md): each message goes to exactly one
member of a group, round-robin across members; groups and plain subscribers each get their copy."""

from collections import Counter

from harness import wait_for
from mqttc import V311, connected, unique


def test_shared_subscription_round_robin(fleetmq):
    root = unique("shared")
    members = [connected(fleetmq.addr) for _ in range(2)]
    for m in members:
        m.subscribe(f"$share/g1/{root}/+", 1)
    other_group = connected(fleetmq.addr)
    other_group.subscribe(f"$share/g2/{root}/+", 1)
    plain = connected(fleetmq.addr)
    plain.subscribe(f"{root}/+", 1)
    pub = connected(fleetmq.addr)
    total = 40
    sent = [f"s{i}".encode() for i in range(total)]
    for p in sent:
        pub.publish(f"{root}/t", p, qos=1)
    plain.wait_messages(total)
    other_group.wait_messages(total)
    # Every message to exactly one member of g1.
    wait_for(lambda: sum(len(m.messages) for m in members) >= total, 5, "g1 to get every message")
    got = [p for m in members for p in m.payloads()]
    counts = Counter(got)
    assert sorted(counts) == sorted(sent) and set(counts.values()) == {1}, "each exactly once"
    shares = [len(m.messages) for m in members]
    assert min(shares) >= total // 4, f"round-robin should split about evenly: {shares}"
    # The shared topic arrives as the real topic, not the $share filter.
    assert all(msg.topic == f"{root}/t" for m in members for msg in m.messages)
    assert [m.payload for m in other_group.messages] == sent
    assert [m.payload for m in plain.messages] == sent
    for c in (*members, other_group, plain, pub):
        c.disconnect()


def test_shared_subscription_member_leaves(fleetmq):
    root = unique("shared-leave")
    a = connected(fleetmq.addr)
    b = connected(fleetmq.addr)
    for c in (a, b):
        c.subscribe(f"$share/g/{root}", 1)
    b.unsubscribe(f"$share/g/{root}")
    pub = connected(fleetmq.addr)
    for i in range(6):
        pub.publish(root, f"x{i}".encode(), qos=1)
    assert len(a.wait_messages(6)) == 6, "the remaining member gets everything"
    assert b.messages == []
    for c in (a, b, pub):
        c.disconnect()


def test_shared_subscription_v311_client(fleetmq):
    root = unique("shared311")
    a = connected(fleetmq.addr, protocol=V311)
    a.subscribe(f"$share/g/{root}/#", 1)
    pub = connected(fleetmq.addr)
    pub.publish(f"{root}/x", b"hello", qos=1)
    assert a.wait_messages(1)[0].topic == f"{root}/x"
    a.disconnect()
    pub.disconnect()
