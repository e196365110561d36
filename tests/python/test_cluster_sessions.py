"""Persistent MQTT sessions across the nodes of a cluster (issue 14 items 4 and 5, README
"Running a cluster"): three `fleetmq serve --cluster` nodes A, B, C (and a fourth, D, to kill)
on one redis-server and on a 3-master Redis Cluster, real paho v5 clients.

- a session made on A (clean start 0, expiry 300, QoS 1 subscription), disconnected; 100 QoS 1
  messages published on C; resumed on B: session present, all 100 in order, nothing else;
- kill -9 of the node holding a session's connection with messages unacknowledged and queued:
  resumed on B, nothing lost, the unacknowledged ones again with DUP and their packet ids;
- clean start on another node discards the stored session, also for three ids among 120
  clean-start clients connecting at once (their deletes go to Redis in one batch);
- Redis away: a CONNECT that needs the session store gets CONNACK 0x88, a QoS 1 publish with a
  durable subscriber gets PUBACK 0x80 (v5) or disconnects its 3.1.1 publisher without an ack;
- garbage written into Redis by others (queue entries, notices, records) is skipped or deleted.

The table of durable sessions spreads asynchronously (a notice, a sync every 2 s): a test first
publishes probes on the publishing node until one is in the session's queue in Redis.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_util import Cluster
from e2e_util import metrics
from harness import wait_for
from mqttc import V311, Client, connect_props, connected, reason_value, unique

TABLE_TIMEOUT = 15.0
EXPIRY = 300


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request, fleetmq_path, tmp_path_factory):
    c = Cluster(fleetmq_path, tmp_path_factory.mktemp("cluster-sessions"),
                redis_cluster=request.param == "redis-cluster")
    try:
        for name in ("a", "b", "c"):
            c.start_node(name)
        c.wait_nodes(["a", "b", "c"])
    except BaseException:
        print(c.logs())
        c.stop()
        raise
    yield c
    c.stop()


def persistent(node, client_id, clean_start=False, manual_ack=False):
    """A v5 client connected with clean start 0 (by default) and session expiry 300."""
    client = Client(node.addr, client_id, manual_ack=manual_ack)
    client.connect(clean_start=clean_start,
                   properties=connect_props(SessionExpiryInterval=EXPIRY))
    return client


def persistent_once_up(node, client_id):
    """`persistent`, retried while `node` refuses with CONNACK 0x88: Redis may have just come
    back from a previous test, and the node opens sessions once it reaches Redis again."""
    client = Client(node.addr, client_id)
    wait_for(lambda: reason_value(client.connect(
        clean_start=False, properties=connect_props(SessionExpiryInterval=EXPIRY))[1]) == 0,
        TABLE_TIMEOUT, f"a durable session opened on {node.addr}", 0.2)
    return client


def queue_len(cluster, client_id) -> int:
    return int(cluster.redis_reply("XLEN", f"{{fleetmq:s:{client_id}}}:queue") or 0)


def wait_queued(cluster, publisher, client_id, topic):
    """Publishes QoS 1 probes on `topic` until one is in the session's queue in Redis (the
    publishing node knows the session)."""
    def queued():
        publisher.publish(topic, b"probe", qos=1)
        return queue_len(cluster, client_id) > 0
    wait_for(queued, TABLE_TIMEOUT, f"a probe in {client_id}'s queue", 0.2)


def test_a_session_made_on_a_resumes_on_b_with_the_100_messages_published_on_c(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    client_id = unique("ps")
    base = unique("pers")
    topic = f"{base}/m"
    first = persistent(a, client_id)
    assert not first.session_present
    first.subscribe(f"{base}/#", qos=1)
    first.disconnect()
    publisher = connected(c.addr, unique("pub"))
    wait_queued(cluster, publisher, client_id, f"{base}/probe")
    sent = [f"m{i}".encode() for i in range(100)]
    for p in sent:
        # Acknowledged = in the session's queue in Redis.
        publisher.publish(topic, p, qos=1)
    resumed = persistent(b, client_id)
    assert resumed.session_present
    wait_for(lambda: len(resumed.payloads(topic)) >= 100, 20, "the 100 messages on B")
    # The subscription came along: a message published now arrives after them, and nothing
    # arrived twice or out of order.
    end = unique("end").encode()
    publisher.publish(topic, end, qos=1)
    resumed.wait_payload(end, timeout=10)
    assert resumed.payloads(topic) == sent + [end]
    assert all(m.qos == 1 for m in resumed.messages)
    # A publish on the session's own node goes through its queue too.
    same_node = connected(b.addr, unique("pub-b"))
    same_node.publish(topic, b"from-b", qos=1)
    resumed.wait_payload(b"from-b", timeout=10)
    assert resumed.payloads(topic) == sent + [end, b"from-b"]
    assert queue_len(cluster, client_id) == 0 or wait_for(
        lambda: queue_len(cluster, client_id) == 0, 10, "the acknowledged entries deleted")
    same_node.disconnect()
    resumed.disconnect()
    publisher.disconnect()


def test_qos_2_messages_queued_for_a_moved_session_arrive_once(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    client_id = unique("q2")
    base = unique("qos2")
    topic = f"{base}/m"
    first = persistent(a, client_id)
    first.subscribe(f"{base}/#", qos=2)
    first.disconnect()
    publisher = connected(c.addr, unique("pub"))
    wait_queued(cluster, publisher, client_id, f"{base}/probe")
    sent = [f"q{i}".encode() for i in range(10)]
    for p in sent:
        publisher.publish(topic, p, qos=2)
    resumed = persistent(b, client_id)
    assert resumed.session_present
    end = unique("end").encode()
    publisher.publish(topic, end, qos=2)
    resumed.wait_payload(end, timeout=20)
    got = [m for m in resumed.messages if m.topic == topic]
    assert [m.payload for m in got] == sent + [end]
    assert all(m.qos == 2 for m in got)
    # PUBCOMP deleted every entry and its mark.
    wait_for(lambda: queue_len(cluster, client_id) == 0
             and cluster.redis_reply("EXISTS", f"{{fleetmq:s:{client_id}}}:sent") == "0",
             10, "the completed QoS 2 entries deleted")
    resumed.disconnect()
    publisher.disconnect()


def test_kill_9_of_the_holding_node_loses_nothing_and_resends_unacked_with_dup(cluster):
    b, c = cluster.nodes["b"], cluster.nodes["c"]
    d = cluster.start_node("d")
    try:
        cluster.wait_nodes(["a", "b", "c", "d"], on=["c", "d"])
        client_id = unique("k9")
        base = unique("kill")
        topic = f"{base}/m"
        holder = persistent(d, client_id, manual_ack=True)
        holder.subscribe(f"{base}/#", qos=1)
        publisher = connected(c.addr, unique("pub"))
        wait_queued(cluster, publisher, client_id, f"{base}/probe")
        sent = [f"m{i}".encode() for i in range(20)]
        for p in sent:
            publisher.publish(topic, p, qos=1)
        wait_for(lambda: len(holder.payloads(topic)) >= 20, 10, "the 20 messages on D")
        # Acknowledge the probes and the first half only.
        with holder._lock:
            received = list(holder.messages)
        unacked = {}
        for m in received:
            if m.topic == topic and m.payload in sent[10:]:
                unacked[m.payload] = m.mid
            else:
                holder.paho.ack(m.mid, m.qos)
        assert len(unacked) == 10
        # In Redis: the 10 unacknowledged entries, each marked with its packet id.
        mark_key = f"{{fleetmq:s:{client_id}}}:sent"
        wait_for(lambda: queue_len(cluster, client_id) == 10
                 and cluster.redis_reply("HLEN", mark_key) == "10", 10,
                 "only the unacknowledged entries left, marked sent")
        d.proc.kill()  # kill -9: no DISCONNECT, nothing flushed
        d.proc.wait()
        later = [f"n{i}".encode() for i in range(10)]
        for p in later:
            publisher.publish(topic, p, qos=1)
        resumed = persistent(b, client_id)
        assert resumed.session_present
        wait_for(lambda: len(resumed.payloads(topic)) >= 20, 20, "the 20 messages on B")
        end = unique("end").encode()
        publisher.publish(topic, end, qos=1)
        resumed.wait_payload(end, timeout=10)
        got = [m for m in resumed.messages if m.topic == topic]
        assert [m.payload for m in got] == sent[10:] + later + [end]
        for m in got[:10]:
            assert m.dup, m.payload
            assert m.mid == unacked[m.payload], m.payload
        assert not any(m.dup for m in got[10:])
        resumed.disconnect()
        publisher.disconnect()
    finally:
        d.stop()
        del cluster.nodes["d"]


def test_clean_start_on_another_node_discards_the_stored_session(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    client_id = unique("cs")
    base = unique("clean")
    first = persistent(a, client_id)
    first.subscribe(f"{base}/#", qos=1)
    first.disconnect()
    publisher = connected(c.addr, unique("pub"))
    wait_queued(cluster, publisher, client_id, f"{base}/probe")
    fresh = Client(b.addr, client_id)
    fresh.connect(clean_start=True)
    assert not fresh.session_present
    wait_for(lambda: cluster.redis_reply("HEXISTS", "fleetmq:sessions", client_id) == "0"
             and queue_len(cluster, client_id) == 0, 10, "the stored session deleted")
    # Nothing of the old session: no queued probe, no subscription.
    own = unique("own")
    fresh.subscribe(own, qos=1)
    publisher.publish(f"{base}/m", b"after", qos=1)
    publisher.publish(own, b"marker", qos=1)
    fresh.wait_payload(b"marker", timeout=10)
    assert fresh.payloads() == [b"marker"]
    fresh.disconnect()
    # And a later resume finds no session.
    again = persistent(a, client_id)
    assert not again.session_present
    again.disconnect()
    publisher.disconnect()


def test_clean_starts_in_a_storm_of_connects_discard_their_stored_sessions(cluster):
    a, b, c = (cluster.nodes[n] for n in "abc")
    base = unique("storm")
    stored = [unique("st") for _ in range(3)]
    for client_id in stored:
        first = persistent(a, client_id)
        first.subscribe(f"{base}/#", qos=1)
        first.disconnect()
    publisher = connected(c.addr, unique("pub"))
    for client_id in stored:
        wait_queued(cluster, publisher, client_id, f"{base}/probe")
    others = [unique("plain") for _ in range(117)]
    ids = others[:40] + stored[:1] + others[40:80] + stored[1:2] + others[80:] + stored[2:]
    clients = []
    with ThreadPoolExecutor(16) as pool:
        try:
            clients = list(pool.map(lambda i: connected(b.addr, i), ids))
            assert not any(cl.session_present for cl in clients)

            def deleted():
                return all(cluster.redis_reply("HEXISTS", "fleetmq:sessions", i) == "0"
                           and queue_len(cluster, i) == 0 for i in stored)
            wait_for(deleted, 10, "the three stored sessions deleted")
            list(pool.map(lambda cl: cl.disconnect(), clients))
        finally:
            for cl in clients:
                cl.close()
    # A later resume of each finds no session.
    for client_id in stored:
        again = persistent(a, client_id)
        assert not again.session_present
        again.disconnect()
    publisher.disconnect()


def session_metric(node, reason=None) -> float:
    """`fleetmq_cluster_session_ops_dropped_total{reason}`, or the appends without a reason."""
    sample = metrics(node)
    if reason is None:
        return sample["fleetmq_cluster_session_appends_total"]
    return sample[f'fleetmq_cluster_session_ops_dropped_total{{reason="{reason}"}}']


def test_redis_away_refuses_what_the_session_store_cannot_honour(cluster):
    """README "Running a cluster", Redis unreachable: a CONNECT that must open a persistent
    session gets CONNACK 0x88; a QoS 1 publish with a durable subscriber gets PUBACK 0x80 (its
    client sends it again), counted in `fleetmq_cluster_session_ops_dropped_total`; a plain
    clean session and local delivery go on."""
    a, c = cluster.nodes["a"], cluster.nodes["c"]
    client_id = unique("ra")
    base = unique("away")
    durable = persistent(a, client_id)
    durable.subscribe(f"{base}/#", qos=1)
    durable.disconnect()
    publisher = connected(c.addr, unique("pub"))
    wait_queued(cluster, publisher, client_id, f"{base}/probe")
    local = connected(c.addr, unique("local"))
    local.subscribe(f"{base}/#", qos=1)
    # The probe in the queue was appended by C.
    wait_for(lambda: session_metric(c) >= 1, 10, "C's appends counted")
    unavailable = session_metric(c, "unavailable")
    cluster.redis.stop()
    try:
        code, props = publisher.publish(f"{base}/m", b"during", qos=1, timeout=10)
        assert reason_value(code) == 0x80, code
        assert "Redis" in (getattr(props, "ReasonString", "") or "")
        # Counted before the PUBACK went out.
        assert session_metric(c, "unavailable") > unavailable
        assert session_metric(c, "full") == 0
        # Delivered live to the local subscriber all the same (the client resends).
        local.wait_payload(b"during", timeout=10)
        refused = Client(c.addr, unique("new-durable"))
        flags, code, _ = refused.connect(
            clean_start=False, properties=connect_props(SessionExpiryInterval=EXPIRY))
        assert reason_value(code) == 0x88, code
        plain = connected(c.addr, unique("plain"))
        plain.disconnect()
    finally:
        cluster.restart_redis()
    local.disconnect()
    publisher.disconnect()


def test_redis_away_disconnects_a_3_1_1_publisher_without_an_ack(cluster):
    """README "Running a cluster", Redis unreachable: 3.1.1 has no PUBACK reason code, so a
    QoS 1 publish with a durable subscriber whose append Redis does not acknowledge closes
    the 3.1.1 publisher's connection without PUBACK (its client sends it again on
    reconnecting); the local subscriber still gets it live."""
    a, c = cluster.nodes["a"], cluster.nodes["c"]
    client_id = unique("ra311")
    base = unique("away311")
    durable = persistent_once_up(a, client_id)
    durable.subscribe(f"{base}/#", qos=1)
    durable.disconnect()
    # Probes from a v5 client (a 3.1.1 one would be disconnected by a probe C could not append).
    prober = connected(c.addr, unique("probe"))
    wait_queued(cluster, prober, client_id, f"{base}/probe")
    prober.disconnect()
    publisher = connected(c.addr, unique("pub311"), protocol=V311)
    local = connected(c.addr, unique("local"))
    local.subscribe(f"{base}/#", qos=1)
    cluster.redis.stop()
    try:
        info = publisher.publish_nowait(f"{base}/m", b"during-311", qos=1)
        # Closed after persist::WRITE_WAIT, well within the deadline.
        publisher.wait_disconnected(timeout=15)
        assert publisher._pubacks.get(info.mid) is None, publisher._pubacks.get(info.mid)
        publisher.close()  # no reconnect (it would resend while Redis is still away)
        local.wait_payload(b"during-311", timeout=10)
    finally:
        cluster.restart_redis()
    local.disconnect()


def test_garbage_in_redis_is_skipped_deleted_and_harms_nothing(cluster):
    """Redis is writable by others than fleetmq: unreadable queue entries are deleted (not read
    again every second), unreadable notices and records are ignored, a record naming no live
    node with invalid subscriptions expires, and the session goes on."""
    a = cluster.nodes["a"]
    client_id = unique("junk")
    base = unique("junk")
    session = persistent_once_up(a, client_id)
    session.subscribe(f"{base}/#", qos=1)
    key = f"{{fleetmq:s:{client_id}}}:queue"
    cluster.redis_reply("XADD", key, "*", "d", "garbage")
    cluster.redis_reply("XADD", key, "*", "x", "no data field")
    cluster.redis_reply("XADD", key, "*", "d", "E\x01\x00\x00not a frame")
    cluster.redis_reply("PUBLISH", "fleetmq:sessions:changed", "garbage")
    cluster.redis_reply("HSET", "fleetmq:sessions", f"{client_id}-bad", "{not json")
    stranger = f"{client_id}-stranger"
    cluster.redis_reply(
        "HSET", "fleetmq:sessions", stranger,
        '{"node":"no-such-node","expiry":1,"subs":[{"f":"a/#/b","q":1},{"f":"#","q":7}]}')
    # A's poll (once a second) reads the queue and deletes what it cannot read.
    wait_for(lambda: queue_len(cluster, client_id) == 0, 15, "the garbage entries deleted")
    # The stranger's node is not live: marked disconnected, then deleted past its expiry.
    wait_for(lambda: cluster.redis_reply("HEXISTS", "fleetmq:sessions", stranger) == "0",
             15, "the stranger's record expired")
    # The session still works: a publish on its node goes through its queue.
    publisher = connected(a.addr, unique("pub"))
    publisher.publish(f"{base}/m", b"after-junk", qos=1)
    session.wait_payload(b"after-junk", timeout=10)
    assert session.payloads(f"{base}/m") == [b"after-junk"]
    cluster.redis_reply("HDEL", "fleetmq:sessions", f"{client_id}-bad")
    publisher.disconnect()
    session.disconnect()


def test_a_resume_deletes_sent_marks_of_entries_no_longer_queued(cluster):
    """A sent mark whose entry left the queue (trimmed while in flight, its delete lost) would
    stay until the session ends: the resume that reads the whole queue deletes it."""
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    client_id = unique("marks")
    first = persistent_once_up(a, client_id)
    first.subscribe(f"{unique('marks')}/#", qos=1)
    first.disconnect()
    marks = f"{{fleetmq:s:{client_id}}}:sent"
    cluster.redis_reply("HSET", marks, "1-0", "5", "2-0", "r6")
    resumed = persistent_once_up(b, client_id)
    assert resumed.session_present
    # Deleted before CONNACK.
    assert cluster.redis_reply("EXISTS", marks) == "0"
    resumed.disconnect()
