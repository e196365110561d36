"""Regressions from the broker review: input that once could crash the broker or pin memory.

- A topic or filter with tens of thousands of levels used to overflow the router's stack (the
  topic trees recurse per level); it is now refused (DISCONNECT 0x90 / SUBACK 0x8F) and the
  broker carries on.
- More retained messages than --max-queued all reach a new subscriber (retained replay is not
  capped by the session queue).
"""

import rawmqtt
from mqttc import connected, unique


def test_deep_topic_is_refused_and_broker_survives(fleetmq):
    raw = rawmqtt.RawClient(fleetmq.addr)
    raw.connect(unique("deep"))
    raw.send(rawmqtt.publish("/" * 60000, b"x", retain=True))
    packets = raw.wait_closed(5)
    assert packets and packets[-1].type == rawmqtt.DISCONNECT and packets[-1].reason == 0x90

    sub = rawmqtt.RawClient(fleetmq.addr)
    sub.connect(unique("deepsub"))
    suback = sub.subscribe(1, [("+/" * 30000 + "#", 0), ("ok/#", 0)])
    assert suback.codes == [0x8F, 0]

    # The broker is alive: an ordinary client still round-trips.
    c = connected(fleetmq.addr)
    topic = unique("alive")
    c.subscribe(topic, 1)
    c.publish(topic, b"still here", qos=1)
    c.wait_payload(b"still here")


def test_more_retained_than_max_queued_all_arrive(fleetmq_factory):
    broker = fleetmq_factory("--max-queued", "50")
    prefix = unique("many")
    pub = connected(broker.addr)
    for i in range(200):
        pub.publish(f"{prefix}/{i}", b"r", qos=1, retain=True)
    sub = connected(broker.addr)
    sub.subscribe(f"{prefix}/#", 1)
    got = sub.wait_messages(200, timeout=20)
    assert len({m.topic for m in got}) == 200
