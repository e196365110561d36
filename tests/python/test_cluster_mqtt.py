"""Plain MQTT across the nodes of a cluster (issue 14, README "Running a cluster"): three
`fleetmq serve --cluster` nodes A, B, C on one redis-server, real paho v5 / 3.1.1 clients and
Debian's mosquitto_pub / mosquitto_sub.

- subscribers on B and C with overlapping filters, publisher on A: one copy each;
- a `$share` group spread over the nodes: one copy per group;
- client id `x` connecting to C kicks `x` on A (v5: DISCONNECT 0x8E; 3.1.1: closed), its will
  is published once; the owner key in Redis follows the session; so do 80 ids connecting on B
  at once (their claims go to Redis in one batch);
- a retained message set on A reaches a new subscriber on C, and its clear from B clears it
  everywhere; sets and clears racing on two nodes end the same everywhere;
- Redis stopped: local delivery goes on; back: routes rewritten, cross-node delivery resumes.

Routes spread asynchronously (a `PUBLISH` notification, a sync every 2 s): a test first waits
until a probe published on the publishing node reaches its subscribers, with a deadline.
"""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_util import Cluster
from harness import wait_for
from mqttc import V311, Client, connected, unique

ROUTE_TIMEOUT = 15.0


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request, fleetmq_path, tmp_path_factory):
    """Three nodes on one redis-server, then on a 3-master Redis Cluster."""
    c = Cluster(fleetmq_path, tmp_path_factory.mktemp("cluster-mqtt"),
                redis_cluster=request.param == "redis-cluster")
    try:
        for name in ("a", "b", "c"):
            c.start_node(name)
        c.wait_nodes(["a", "b", "c"])
        # Every node's route table lists the other two (retained messages go to every node).
        wait_routed(c, [c.nodes[n] for n in "abc"], [c.nodes[n] for n in "abc"])
    except BaseException:
        print(c.logs())
        c.stop()
        raise
    yield c
    c.stop()


def wait_routed(cluster, publishers, subscriber_nodes):
    """Until a probe from each publishing node reaches a subscriber on each of the others."""
    topic = unique("probe")
    subs = [connected(n.addr, unique("probe-sub")) for n in subscriber_nodes]
    pubs = [connected(n.addr, unique("probe-pub")) for n in publishers]
    try:
        for s in subs:
            s.subscribe(topic)
        for i, p in enumerate(pubs):
            tag = f"from-{i}".encode()

            def arrived(p=p, tag=tag):
                p.publish(topic, tag)
                return all(tag in s.payloads(topic) for s in subs)
            wait_for(arrived, ROUTE_TIMEOUT, f"a probe from node {i} on every node", 0.2)
    finally:
        for c in subs + pubs:
            c.disconnect()


def ready_subscription(publisher: Client, topic: str, subscribers):
    """Publishes probes on `topic` until each subscriber has one, then clears them."""
    def arrived():
        publisher.publish(topic, b"probe")
        return all(b"probe" in s.payloads() for s in subscribers)
    wait_for(arrived, ROUTE_TIMEOUT, f"the route for {topic}", 0.2)
    end = unique("end").encode()
    publisher.publish(topic, end, qos=1)
    for s in subscribers:
        s.wait_payload(end)
        s.clear()


def finish(publisher: Client, topic: str, subscribers):
    """Publishes an end marker after the messages under test; every subscriber gets it once
    the messages before it (same path, same order) have arrived."""
    end = unique("end").encode()
    publisher.publish(topic, end, qos=1)
    for s in subscribers:
        s.wait_payload(end, timeout=10)
    return end


def test_overlapping_filters_on_two_nodes_get_one_copy_each(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    base = unique("ovl")
    topic = f"{base}/car/cmd"
    on_b = connected(b.addr, unique("sub-b"))
    on_b.subscribe([(f"{base}/+/cmd", 1), (f"{base}/#", 1)])
    on_c = connected(c.addr, unique("sub-c"))
    on_c.subscribe([(topic, 1), (f"{base}/car/+", 0)])
    on_a = connected(a.addr, unique("sub-a"))
    on_a.subscribe(f"{base}/#", qos=1)
    publisher = connected(a.addr, unique("pub-a"))
    subs = [on_a, on_b, on_c]
    ready_subscription(publisher, topic, subs)
    sent = [f"m{i}".encode() for i in range(20)]
    for p in sent:
        publisher.publish(topic, p, qos=1)
    end = finish(publisher, topic, subs)
    for s in subs:
        assert s.payloads(topic) == sent + [end], s.client_id
    # A topic no remote filter matches is not sent to B or C at all (the route table says so),
    # and A's own subscriber still gets it.
    other = f"{base}-unmatched"
    on_a.subscribe(other)
    publisher.publish(other, b"only-a", qos=1)
    on_a.wait_payload(b"only-a")


def test_a_shared_group_spread_over_nodes_gets_one_copy_per_group(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    base = unique("shr")
    topic = f"{base}/job"
    # Group g: members on B and C (none on the publishing node A); group h: on A and C.
    g = [connected(n.addr, unique("g")) for n in (b, c, c)]
    h = [connected(n.addr, unique("h")) for n in (a, c)]
    for m in g:
        m.subscribe(f"$share/g/{base}/+", qos=1)
    for m in h:
        m.subscribe(f"$share/h/{topic}", qos=1)
    watcher = connected(b.addr, unique("direct"))
    watcher.subscribe(topic, qos=1)
    publisher = connected(a.addr, unique("pub"))

    def group_got(members, payload):
        return sum(m.payloads(topic).count(payload) for m in members)

    # Routes known: a probe reaches both groups and the plain subscriber.
    def probed():
        publisher.publish(topic, b"probe", qos=1)
        return group_got(g, b"probe") and group_got(h, b"probe") and watcher.payloads(topic)
    wait_for(probed, ROUTE_TIMEOUT, "routes of both groups", 0.2)
    for m in g + h + [watcher]:
        m.clear()

    sent = [f"job{i}".encode() for i in range(30)]
    for p in sent:
        publisher.publish(topic, p, qos=1)
    def jobs(member):
        return [p for p in member.payloads(topic) if p != b"probe"]  # a late probe is no job
    wait_for(lambda: jobs(watcher) == sent, 10, "every job at the plain subscriber")
    wait_for(lambda: all(group_got(g, p) and group_got(h, p) for p in sent), 10,
             "every job in both groups")
    # One more round trip through every path, then nothing arrived twice.
    end = unique("end").encode()
    publisher.publish(topic, end, qos=1)
    wait_for(lambda: group_got(g, end) and group_got(h, end), 10, "the end marker")
    for p in sent:
        assert group_got(g, p) == 1, p
        assert group_got(h, p) == 1, p
    # Group g spans nodes B and C and both got a share of the jobs.
    assert jobs(g[0]) and (jobs(g[1]) or jobs(g[2]))


def test_a_client_id_connecting_on_another_node_kicks_the_old_one_will_once(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    client_id = unique("x")
    will_topic = unique("will")
    watcher = connected(b.addr, unique("will-watch"))
    watcher.subscribe(will_topic, qos=1)
    marker_pub = connected(a.addr, unique("marker"))
    ready_subscription(marker_pub, will_topic, [watcher])

    old = Client(a.addr, client_id, reconnect=False)
    old.connect(will={"topic": will_topic, "payload": b"gone", "qos": 1})
    new = Client(c.addr, client_id)
    new.connect()
    flags, reason, _ = old.wait_disconnected(timeout=10)
    assert reason.value == 0x8E, f"session taken over: {reason}"
    watcher.wait_payload(b"gone", timeout=10)
    finish(marker_pub, will_topic, [watcher])
    assert watcher.payloads(will_topic).count(b"gone") == 1
    # The new connection stays: it is served on C.
    topic = unique("to-x")
    new.subscribe(topic, qos=1)
    probe = connected(c.addr, unique("p"))
    probe.publish(topic, b"hello", qos=1)
    new.wait_payload(b"hello")
    assert new.disconnected is None
    # The owner key names C; it goes when the session ends there (clean start, no expiry).
    key = f"fleetmq:client:{client_id}"
    assert cluster.redis_reply("GET", key) == "c"
    new.disconnect()
    wait_for(lambda: cluster.redis_reply("EXISTS", key) == "0", 10,
             "the owner key deleted")

    # 3.1.1: the old connection is closed (no DISCONNECT from a server in 3.1.1).
    old311 = Client(a.addr, unique("y"), protocol=V311, reconnect=False)
    old311.connect()
    Client(b.addr, old311.client_id, protocol=V311).connect()
    old311.wait_disconnected(timeout=10)


def test_a_storm_of_ids_moving_to_another_node_kicks_every_old_connection(cluster):
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    ids = [unique("storm") for _ in range(80)]
    owner = lambda i: cluster.redis_reply("GET", f"fleetmq:client:{i}")  # noqa: E731
    olds, news = [], []
    with ThreadPoolExecutor(16) as pool:
        try:
            # Taken over, an old client must stay away (paho would connect again and take
            # the id back).
            olds = list(pool.map(lambda i: connected(a.addr, i, reconnect=False), ids))
            # A's claims first: one landing after B's would kick B's connection instead.
            wait_for(lambda: all(owner(i) == "a" for i in ids), 10, "every id owned by A")
            news = list(pool.map(lambda i: connected(b.addr, i), ids))
            for old in olds:
                _, reason, _ = old.wait_disconnected(timeout=10)
                assert reason.value == 0x8E, f"{old.client_id} taken over: {reason}"
            assert all(owner(i) == "b" for i in ids)
            assert all(n.disconnected is None for n in news)
            # Clean start, no expiry: each session ends with its connection, and its key goes.
            list(pool.map(lambda n: n.disconnect(), news))
            wait_for(lambda: all(owner(i) is None for i in ids), 10, "every owner key deleted")
        finally:
            for c in olds + news:
                c.close()


def retained_at(node, base, topic, want_marker=None):
    """The retained payloads of `topic` a new subscriber to `base/#` on `node` gets: read once
    `want_marker` (a retained payload) arrived and a live message published after the
    subscription was delivered (retained messages come before it)."""
    sub = connected(node.addr, unique("new-sub"))
    sub.subscribe(f"{base}/#", qos=1)
    if want_marker is not None:
        sub.wait_payload(want_marker, timeout=10)
    live = connected(node.addr, unique("live"))
    live.publish(f"{base}/live", b"now", qos=1)
    sub.wait_payload(b"now")
    got = [m.payload for m in sub.messages if m.topic == topic and m.retain]
    sub.disconnect()
    live.disconnect()
    return got


def test_retained_set_on_a_reaches_c_and_a_clear_from_b_clears_everywhere(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    base = unique("ret")
    topic = f"{base}/door"
    setter = connected(a.addr, unique("set"))
    setter.publish(topic, b"open", qos=1, retain=True)
    # Retained messages spread by the same forwarding: wait until C has it, with a deadline.
    wait_for(lambda: retained_at(c, base, topic) == [b"open"], 10, "the retained message on C")
    # Cleared from B: a marker set after the clear travels the same path B → A and B → C.
    clearer = connected(b.addr, unique("clear"))
    clearer.publish(topic, b"", qos=1, retain=True)
    clearer.publish(f"{base}/marker", b"after-clear", qos=1, retain=True)
    for node in (a, b, c):
        assert retained_at(node, base, topic, b"after-clear") == [], node


def test_retained_set_and_clear_racing_on_two_nodes_end_the_same_everywhere(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    base = unique("race")
    topic = f"{base}/t"
    setter = connected(a.addr, unique("set"))
    clearer = connected(b.addr, unique("clear"))
    for i in range(10):
        # Both in flight at once: each node sees its own first and the other's after.
        set_info = setter.publish_nowait(topic, f"v{i}".encode(), qos=1, retain=True)
        clear_info = clearer.publish_nowait(topic, b"", qos=1, retain=True)
        set_info.wait_for_publish(5)
        clear_info.wait_for_publish(5)

    def agreed():
        seen = [tuple(retained_at(n, base, topic)) for n in (a, b, c)]
        return seen if len(set(seen)) == 1 else None
    wait_for(agreed, 15, "every node to hold the same retained message", 0.2)

    # A node started now reads the cluster's retained messages from Redis.
    kept = retained_at(a, base, topic)
    setter.publish(f"{base}/marker", b"m", qos=1, retain=True)
    wait_for(lambda: retained_at(c, base, f"{base}/marker") == [b"m"], 10, "the marker on C")
    d = cluster.start_node("d")
    try:
        assert retained_at(d, base, topic, b"m") == kept
    finally:
        d.stop()
        del cluster.nodes["d"]


def mosquitto(*args):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients missing")
def test_mosquitto_clients_across_nodes(cluster):
    a, c = cluster.nodes["a"], cluster.nodes["c"]
    topic = unique("mosq")
    sub = mosquitto("mosquitto_sub", "-V", "5", "-h", c.addr[0], "-p", str(c.addr[1]),
                    "-t", topic, "-q", "1", "-C", "1", "-W", str(int(ROUTE_TIMEOUT) + 5))
    try:
        # Until mosquitto_sub (one message, then it exits) got one from node A.
        def delivered():
            subprocess.run(["mosquitto_pub", "-V", "311", "-h", a.addr[0], "-p",
                            str(a.addr[1]), "-t", topic, "-q", "1", "-m", "across"],
                           check=True, timeout=10)
            return sub.poll() is not None
        wait_for(delivered, ROUTE_TIMEOUT, "mosquitto_sub on C to get a message from A", 0.2)
        out, err = sub.communicate(timeout=5)
        assert sub.returncode == 0, err
        assert out.decode().strip() == "across"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_redis_away_keeps_local_delivery_and_routes_come_back(cluster):
    """README "Running a cluster", Redis unreachable: a node keeps delivering between its own
    clients; once Redis is back (empty: it keeps nothing on disk here) the nodes write their
    routes again and cross-node delivery resumes."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    topic = unique("part")
    local = connected(a.addr, unique("local"))
    local.subscribe(topic, qos=1)
    remote = connected(b.addr, unique("remote"))
    remote.subscribe(topic, qos=1)
    publisher = connected(a.addr, unique("pub"))
    ready_subscription(publisher, topic, [local, remote])
    cluster.redis.stop()
    try:
        publisher.publish(topic, b"during", qos=1)
        local.wait_payload(b"during")
    finally:
        cluster.restart_redis()
    # Routes rewritten by the 2 s sync, B's included: A forwards to B again.
    def resumed():
        publisher.publish(topic, b"after")
        return b"after" in remote.payloads(topic)
    wait_for(resumed, ROUTE_TIMEOUT, "cross-node delivery after Redis is back", 0.2)
