"""A paho-mqtt 2.x client wrapper for tests: every call waits for its acknowledgement with a
deadline, received messages are collected in order, and `abort` closes the socket without a
DISCONNECT (an abnormal close, which fires the will)."""

import threading
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from harness import Timeout, wait_for

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
ACK_TIMEOUT = 5.0


def unique(prefix: str) -> str:
    """A topic or client id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def props(packet_type: int, **values) -> Properties:
    """`props(PacketTypes.PUBLISH, MessageExpiryInterval=5)`."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def publish_props(**values) -> Properties:
    return props(PacketTypes.PUBLISH, **values)


def connect_props(**values) -> Properties:
    return props(PacketTypes.CONNECT, **values)


def prop(properties: Optional[Properties], name: str, default=None):
    """A property of a received packet, or `default` when absent."""
    if properties is None:
        return default
    return getattr(properties, name, default)


class Client:
    """One paho client running its network loop on a thread."""

    def __init__(self, addr: Tuple[str, int], client_id: str = "", protocol: int = V5,
                 manual_ack: bool = False, transport: str = "tcp", ws_path: str = "/mqtt",
                 tls_ca: Optional[str] = None, reconnect: bool = True):
        """`transport` "websockets" speaks MQTT over WebSocket at `ws_path`; `tls_ca` (a PEM CA
        file) turns on TLS; `reconnect` False stops paho from connecting again by itself after
        the server closed the connection (a client taken over must stay away)."""
        self.addr = addr
        self.protocol = protocol
        self.client_id = client_id
        self._lock = threading.Condition()
        self.messages: List[mqtt.MQTTMessage] = []
        self.connack: Optional[Tuple] = None
        self.disconnected: Optional[Tuple] = None
        self._subacks: Dict[int, Tuple] = {}
        self._unsubacks: Dict[int, Tuple] = {}
        self._pubacks: Dict[int, Tuple] = {}
        self.manual_ack = manual_ack
        self.transport = transport
        self.ws_path = ws_path
        self.tls_ca = tls_ca
        self.reconnect = reconnect
        self.paho: Optional[mqtt.Client] = None

    def _new_paho(self, clean_start: bool) -> mqtt.Client:
        if self.protocol == V5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=V5, manual_ack=self.manual_ack,
                                 transport=self.transport,
                                 reconnect_on_failure=self.reconnect)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=clean_start, protocol=self.protocol,
                                 manual_ack=self.manual_ack, transport=self.transport,
                                 reconnect_on_failure=self.reconnect)
        if self.transport == "websockets":
            client.ws_set_options(path=self.ws_path)
        if self.tls_ca is not None:
            client.tls_set(ca_certs=self.tls_ca)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_publish = self._on_publish
        return client

    # --- callbacks (paho's thread) ---
    def _on_connect(self, _c, _u, flags, reason_code, properties):
        with self._lock:
            self.connack = (flags, reason_code, properties)
            self._lock.notify_all()

    def _on_disconnect(self, _c, _u, flags, reason_code, properties):
        with self._lock:
            self.disconnected = (flags, reason_code, properties)
            self._lock.notify_all()

    def _on_message(self, _c, _u, msg):
        with self._lock:
            self.messages.append(msg)
            self._lock.notify_all()

    def _on_subscribe(self, _c, _u, mid, reason_codes, properties):
        with self._lock:
            self._subacks[mid] = (reason_codes, properties)

    def _on_unsubscribe(self, _c, _u, mid, reason_codes, properties):
        with self._lock:
            self._unsubacks[mid] = (reason_codes, properties)

    def _on_publish(self, _c, _u, mid, reason_code, properties):
        with self._lock:
            self._pubacks[mid] = (reason_code, properties)

    # --- connection ---
    def connect(self, clean_start: bool = True, keepalive: int = 60,
                properties: Optional[Properties] = None, will: Optional[dict] = None,
                timeout: float = ACK_TIMEOUT):
        """Connects and waits for CONNACK; returns (flags, reason_code, properties).

        `clean_start` is "clean session" for 3.1.1. `will` holds will_set()'s arguments.
        """
        if self.paho is not None:
            self.paho.loop_stop()
        self.paho = self._new_paho(clean_start)
        if will is not None:
            self.paho.will_set(**will)
        self.connack = None
        self.disconnected = None
        if self.protocol == V5:
            self.paho.connect(self.addr[0], self.addr[1], keepalive, clean_start=clean_start,
                              properties=properties)
        else:
            self.paho.connect(self.addr[0], self.addr[1], keepalive)
        self.paho.loop_start()
        wait_for(lambda: self.connack or self.disconnected, timeout, "CONNACK")
        if self.connack is None or reason_value(self.connack[1]) >= 0x80:
            # Refused: stop paho's automatic reconnects, which would go on in the background.
            self.paho.disconnect()
            self.paho.loop_stop()
        if self.connack is None:
            raise AssertionError(f"connection closed before CONNACK: {self.disconnected}")
        return self.connack

    @property
    def session_present(self) -> bool:
        return bool(self.connack[0].session_present)

    @property
    def connack_properties(self) -> Optional[Properties]:
        return self.connack[2] if self.connack else None

    def disconnect(self, properties: Optional[Properties] = None, reason_code=None):
        """A clean DISCONNECT (reason 0x00 unless given), then waits for the loop to notice."""
        if reason_code is None:
            self.paho.disconnect(properties=properties)
        else:
            self.paho.disconnect(reasoncode=reason_code, properties=properties)
        wait_for(lambda: self.disconnected, ACK_TIMEOUT, "disconnect")
        self.paho.loop_stop()

    def close(self):
        """Stops the network loop and paho's automatic reconnects and closes the sockets, without
        waiting for anything. paho's loop uses select(), which fails for file descriptors above
        1023: a test that leaves hundreds of clients open breaks every client made after it."""
        self.paho.disconnect()
        self.paho.loop_stop()
        self.paho._reset_sockets()

    def abort(self):
        """Closes the TCP connection without sending DISCONNECT."""
        sock = self.paho.socket()
        self.paho.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def wait_disconnected(self, timeout: float = ACK_TIMEOUT):
        """Waits until the server closes the connection; returns (flags, reason_code, props)."""
        return wait_for(lambda: self.disconnected, timeout, "server disconnect")

    # --- operations ---
    def subscribe(self, topic, qos: int = 0, options: Optional[SubscribeOptions] = None,
                  properties: Optional[Properties] = None, timeout: float = ACK_TIMEOUT):
        """Subscribes one filter (or a list of (filter, qos|options)); returns (codes, props)."""
        if isinstance(topic, list):
            result, mid = self.paho.subscribe(topic, properties=properties)
        elif options is not None:
            result, mid = self.paho.subscribe(topic, options=options, properties=properties)
        else:
            result, mid = self.paho.subscribe(topic, qos, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        return wait_for(lambda: self._subacks.get(mid), timeout, f"SUBACK for {topic}")

    def unsubscribe(self, topic, timeout: float = ACK_TIMEOUT):
        result, mid = self.paho.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return wait_for(lambda: self._unsubacks.get(mid), timeout, f"UNSUBACK for {topic}")

    def publish(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                properties: Optional[Properties] = None, timeout: float = ACK_TIMEOUT):
        """Publishes; for QoS 1/2 waits for PUBACK/PUBCOMP and returns (reason_code, props)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        if qos == 0:
            info.wait_for_publish(timeout)
            return None
        return wait_for(lambda: self._pubacks.get(info.mid), timeout,
                        f"ack of QoS {qos} publish to {topic}")

    def publish_nowait(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                       properties: Optional[Properties] = None):
        return self.paho.publish(topic, payload, qos, retain, properties)

    # --- received messages ---
    def wait_messages(self, count: int, timeout: float = ACK_TIMEOUT) -> List[mqtt.MQTTMessage]:
        """Waits until at least `count` messages have arrived; returns all received so far."""
        wait_for(lambda: len(self.messages) >= count, timeout,
                 f"{count} messages (have {len(self.messages)})")
        with self._lock:
            return list(self.messages)

    def wait_payload(self, payload: bytes, timeout: float = ACK_TIMEOUT) -> List[mqtt.MQTTMessage]:
        """Waits for a message with `payload`; returns every message received before it
        (a marker published after the messages under test bounds what else could arrive)."""
        def seen():
            with self._lock:
                for i, m in enumerate(self.messages):
                    if m.payload == payload:
                        return (list(self.messages[:i]),)
            return None
        return wait_for(seen, timeout, f"message {payload!r}")[0]

    def payloads(self, topic: Optional[str] = None) -> List[bytes]:
        with self._lock:
            return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def clear(self):
        with self._lock:
            self.messages.clear()


def connected(addr, client_id: Optional[str] = None, protocol: int = V5, reconnect: bool = True,
              **kwargs) -> Client:
    """A connected client with a fresh unique client id unless one is given."""
    client = Client(addr, client_id if client_id is not None else unique("c"), protocol,
                    reconnect=reconnect)
    client.connect(**kwargs)
    return client


def sub_options(qos: int = 0, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> SubscribeOptions:
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                            retainHandling=retain_handling)


def reason_value(code) -> int:
    """The numeric value of a paho ReasonCode (or an int)."""
    return code.value if hasattr(code, "value") else int(code)


def user_properties(properties: Optional[Properties]) -> Sequence:
    return list(prop(properties, "UserProperty", []) or [])


__all__ = ["Client", "connected", "unique", "publish_props", "connect_props", "props", "prop",
           "sub_options", "reason_value", "user_properties", "V311", "V5", "Timeout", "wait_for",
           "PacketTypes"]
