"""Sessions (docs/mqtt.md#sessions-and-queues): session expiry with an offline queue bounded by
--max-queued (oldest dropped), clean start discarding the session, expiry ending it, and message
expiry (expired messages not delivered from the queue; the remaining interval decremented on
delivery)."""

import time

from e2e_util import metrics
from harness import wait_for
from mqttc import V311, V5, Client, PacketTypes, connect_props, connected, prop, props, unique


def persistent(addr, client_id, expiry=60, clean_start=False):
    c = Client(addr, client_id, V5)
    c.connect(clean_start=clean_start, properties=connect_props(SessionExpiryInterval=expiry))
    return c


def end_session(c: Client):
    c.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


def test_offline_queue_delivered_on_resume(fleetmq):
    topic, client_id = unique("offline"), unique("sess")
    sub = persistent(fleetmq.addr, client_id, clean_start=True)
    assert not sub.session_present
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(fleetmq.addr)
    sent = [f"q{i}".encode() for i in range(5)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    pub.publish(topic, b"q0-qos0", qos=0)
    back = persistent(fleetmq.addr, client_id)
    assert back.session_present, "the session survived the disconnect"
    # Subscriptions survived too: no SUBSCRIBE needed. A marker after reconnect bounds the queue.
    pub.publish(topic, b"marker", qos=1)
    queued = [m.payload for m in back.wait_payload(b"marker")]
    assert [p for p in queued if p != b"q0-qos0"] == sent
    end_session(back)
    pub.disconnect()


def test_v311_persistent_session(fleetmq):
    topic, client_id = unique("offline311"), unique("sess311")
    sub = Client(fleetmq.addr, client_id, V311)
    sub.connect(clean_start=False)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"while-away", qos=1)
    back = Client(fleetmq.addr, client_id, V311)
    back.connect(clean_start=False)
    assert back.session_present
    assert back.wait_messages(1)[0].payload == b"while-away"
    back.disconnect()
    cleanup = Client(fleetmq.addr, client_id, V311)
    cleanup.connect(clean_start=True)
    cleanup.disconnect()
    pub.disconnect()


def test_offline_queue_bounded_drops_oldest(fleetmq_factory):
    broker = fleetmq_factory("--max-queued", "5")
    topic, client_id = unique("bounded"), unique("sess")
    sub = persistent(broker.addr, client_id, clean_start=True)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(broker.addr)
    for i in range(12):
        pub.publish(topic, f"m{i}".encode(), qos=1)
    back = persistent(broker.addr, client_id)
    assert back.session_present
    pub.publish(topic, b"marker", qos=1)
    queued = [m.payload for m in back.wait_payload(b"marker")]
    assert queued == [f"m{i}".encode() for i in range(7, 12)], "the newest 5, oldest dropped"
    end_session(back)
    pub.disconnect()


def test_clean_start_discards_session(fleetmq):
    topic, client_id = unique("discard"), unique("sess")
    sub = persistent(fleetmq.addr, client_id, clean_start=True)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"stale", qos=1)
    fresh = persistent(fleetmq.addr, client_id, clean_start=True)
    assert not fresh.session_present
    # Neither the queued message nor the subscription survived.
    fresh.subscribe(topic + "/marker", 1)
    pub.publish(topic, b"after", qos=1)
    pub.publish(topic + "/marker", b"marker", qos=1)
    assert fresh.wait_payload(b"marker") == []
    end_session(fresh)
    pub.disconnect()


def test_session_gone_after_expiry(fleetmq):
    topic, client_id = unique("expire"), unique("sess")
    sub = persistent(fleetmq.addr, client_id, expiry=1, clean_start=True)
    sub.subscribe(topic, 1)
    sub.disconnect()
    disconnected_at = time.monotonic()
    # Within the expiry the session is there; probing it would resume it, so only probe after.
    wait_for(lambda: time.monotonic() - disconnected_at > 2.5, 5, "the session expiry to pass")
    back = persistent(fleetmq.addr, client_id)
    assert not back.session_present, "session expired 1 s after disconnect"
    end_session(back)


def test_session_expiry_zero_ends_at_disconnect(fleetmq):
    client_id = unique("sess0")
    open_before = metrics(fleetmq).get("fleetmq_connections", 0)
    c = persistent(fleetmq.addr, client_id, expiry=0, clean_start=True)
    c.subscribe(unique("t"), 1)
    c.disconnect()
    # paho returns once it sent DISCONNECT; the broker ends the session when it reads it. A
    # connection counts as closed only after its end reached the router, so once the count is
    # back, a new CONNECT cannot overtake it (it would take the session over, present).
    wait_for(lambda: metrics(fleetmq).get("fleetmq_connections", 0) <= open_before, 5,
             "the broker to end the first connection")
    back = persistent(fleetmq.addr, client_id)
    assert not back.session_present
    end_session(back)


def test_message_expiry_in_offline_queue(fleetmq):
    topic, client_id = unique("msgexp"), unique("sess")
    sub = persistent(fleetmq.addr, client_id, clean_start=True)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"short", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(topic, b"long", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    published_at = time.monotonic()
    wait_for(lambda: time.monotonic() - published_at > 2.2, 5, "the short expiry to pass")
    back = persistent(fleetmq.addr, client_id)
    pub.publish(topic, b"marker", qos=1)
    queued = back.wait_payload(b"marker")
    assert [m.payload for m in queued] == [b"long"], "the expired message is not delivered"
    remaining = prop(queued[0].properties, "MessageExpiryInterval")
    assert remaining is not None, "the message expiry interval is forwarded"
    assert 1 <= remaining <= 28, f"remaining interval decremented by the queued time: {remaining}"
    end_session(back)
    pub.disconnect()


def test_message_expiry_forwarded_live(fleetmq):
    topic = unique("live-exp")
    sub = connected(fleetmq.addr)
    sub.subscribe(topic, 1)
    pub = connected(fleetmq.addr)
    pub.publish(topic, b"x", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    remaining = prop(sub.wait_messages(1)[0].properties, "MessageExpiryInterval")
    assert remaining is not None and 58 <= remaining <= 60
    sub.disconnect()
    pub.disconnect()


def test_session_takeover_disconnects_old_connection(fleetmq):
    client_id = unique("takeover")
    first = Client(fleetmq.addr, client_id, V5)
    first.connect()
    second = Client(fleetmq.addr, client_id, V5)
    second.connect()
    flags, reason, _ = first.wait_disconnected()
    assert reason.value == 0x8E, f"session taken over: {reason}"
    second.disconnect()


def _dropped_in_metrics(broker) -> float:
    """The largest `*dropped*` counter on /metrics (Prometheus text format)."""
    import urllib.request
    with urllib.request.urlopen(
            f"http://{broker.http_host}:{broker.http_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if not line.startswith("#") and "dropped" in line.split(" ")[0]]
    return max(values, default=0.0)


def test_queue_overflow_counted_in_sys_and_metrics(fleetmq_factory):
    """Issue 2: when the queue is full the oldest is dropped and counted in $SYS and metrics."""
    broker = fleetmq_factory("--max-queued", "2")
    topic, client_id = unique("overflow"), unique("sess")
    sub = persistent(broker.addr, client_id, clean_start=True)
    sub.subscribe(topic, 1)
    sub.disconnect()
    pub = connected(broker.addr)
    for i in range(7):
        pub.publish(topic, f"m{i}".encode(), qos=1)
    assert wait_for(lambda: _dropped_in_metrics(broker) >= 5, 5, "dropped counter on /metrics")
    watcher = connected(broker.addr)
    watcher.subscribe("$SYS/broker/#", 0)

    def sys_dropped():
        for m in list(watcher.messages):
            if "dropped" in m.topic:
                try:
                    if float(m.payload.split()[0]) >= 5:
                        return m.topic
                except (ValueError, IndexError):
                    pass
        return None
    wait_for(sys_dropped, 12, "a $SYS/broker/...dropped counter of at least 5")
    back = persistent(broker.addr, client_id)
    pub.publish(topic, b"marker", qos=1)
    assert [m.payload for m in back.wait_payload(b"marker")] == [b"m5", b"m6"]
    end_session(back)
    for c in (pub, watcher):
        c.disconnect()
