"""A raw-socket MQTT client for what paho hides: unacknowledged in-flight windows, topic aliases
sent by the server, DUP redelivery, and packets a well-behaved client would never send.

Packets are built and parsed here by hand from the OASIS specifications (3.1.1 and 5.0)."""

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# v5 property identifiers and their value types.
BYTE, U16, U32, VARINT, STR, BIN, PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"
PROPERTY_TYPES: Dict[int, str] = {
    0x01: BYTE, 0x02: U32, 0x03: STR, 0x08: STR, 0x09: BIN, 0x0B: VARINT, 0x11: U32, 0x12: STR,
    0x13: U16, 0x15: STR, 0x16: BIN, 0x17: BYTE, 0x18: U32, 0x19: BYTE, 0x1A: STR, 0x1C: STR,
    0x1F: STR, 0x21: U16, 0x22: U16, 0x23: U16, 0x24: BYTE, 0x25: BYTE, 0x26: PAIR, 0x27: U32,
    0x28: BYTE, 0x29: BYTE, 0x2A: BYTE,
}
MESSAGE_EXPIRY, SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_CLIENT_ID = 0x02, 0x0B, 0x11, 0x12
SERVER_KEEP_ALIVE, REASON_STRING, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM = 0x13, 0x1F, 0x21, 0x22
TOPIC_ALIAS, USER_PROPERTY, MAXIMUM_PACKET_SIZE, WILL_DELAY = 0x23, 0x26, 0x27, 0x18


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s) -> bytes:
    data = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack(">H", len(data)) + data


def encode_properties(props: Optional[List[Tuple[int, object]]]) -> bytes:
    body = bytearray()
    for ident, value in props or []:
        kind = PROPERTY_TYPES[ident]
        body += varint(ident)
        if kind == BYTE:
            body.append(value)
        elif kind == U16:
            body += struct.pack(">H", value)
        elif kind == U32:
            body += struct.pack(">I", value)
        elif kind == VARINT:
            body += varint(value)
        elif kind in (STR, BIN):
            body += utf8(value)
        else:
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(client_id: str, v5: bool = True, clean: bool = True, keepalive: int = 60,
            props=None, will: Optional[dict] = None) -> bytes:
    """CONNECT; `will` = {"topic", "payload", "qos", "retain", "props"}."""
    flags = 0x02 if clean else 0
    payload = utf8(client_id)
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if v5:
            payload += encode_properties(will.get("props"))
        payload += utf8(will["topic"]) + utf8(will.get("payload", b""))
    body = utf8("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack(">H", keepalive)
    if v5:
        body += encode_properties(props)
    return packet(CONNECT, 0, body + payload)


def publish(topic: str, payload: bytes, qos: int = 0, pkid: int = 0, retain: bool = False,
            v5: bool = True, props=None, dup: bool = False) -> bytes:
    flags = (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = utf8(topic)
    if qos:
        body += struct.pack(">H", pkid)
    if v5:
        body += encode_properties(props)
    return packet(PUBLISH, flags, body + payload)


def subscribe(pkid: int, filters: List[Tuple[str, int]], v5: bool = True, props=None) -> bytes:
    """`filters` = [(filter, options byte)] (options: QoS | no-local 0x04 | RAP 0x08 | RH << 4)."""
    body = struct.pack(">H", pkid)
    if v5:
        body += encode_properties(props)
    for topic, options in filters:
        body += utf8(topic) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def ack(ptype: int, pkid: int, reason: Optional[int] = None) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (PUBREL carries its mandatory flags 0b0010)."""
    body = struct.pack(">H", pkid) + (bytes([reason]) if reason is not None else b"")
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def disconnect(v5: bool = True, reason: int = 0) -> bytes:
    return packet(DISCONNECT, 0, bytes([reason, 0]) if v5 else b"")


PINGREQ_BYTES = bytes([PINGREQ << 4, 0])


@dataclass
class Packet:
    """A decoded packet; only the fields of its type are filled."""
    type: int
    flags: int
    raw: bytes
    pkid: int = 0
    reason: Optional[int] = None
    codes: List[int] = field(default_factory=list)
    props: Dict[int, list] = field(default_factory=dict)
    topic: bytes = b""
    payload: bytes = b""
    session_present: bool = False

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    def prop(self, ident: int, default=None):
        values = self.props.get(ident)
        return values[0] if values else default


class Reader:
    """Cursor over a packet body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated packet")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def varint(self) -> int:
        value, mult = 0, 1
        for _ in range(4):
            b = self.u8()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise ValueError("variable byte integer too long")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def properties(self) -> Dict[int, list]:
        end = self.varint() + self.pos
        out: Dict[int, list] = {}
        while self.pos < end:
            ident = self.varint()
            kind = PROPERTY_TYPES.get(ident)
            if kind == BYTE:
                value = self.u8()
            elif kind == U16:
                value = self.u16()
            elif kind == U32:
                value = self.u32()
            elif kind == VARINT:
                value = self.varint()
            elif kind in (STR, BIN):
                value = self.binary()
            elif kind == PAIR:
                value = (self.binary(), self.binary())
            else:
                raise ValueError(f"unknown property 0x{ident:02x}")
            out.setdefault(ident, []).append(value)
        return out


def parse(first: int, body: bytes, v5: bool) -> Packet:
    ptype, flags = first >> 4, first & 0x0F
    p = Packet(ptype, flags, bytes([first]) + body)
    r = Reader(body)
    if ptype == CONNACK:
        p.session_present = bool(r.u8() & 1)
        p.reason = r.u8()
        if v5 and r.remaining():
            p.props = r.properties()
    elif ptype == PUBLISH:
        p.topic = r.binary()
        if p.qos:
            p.pkid = r.u16()
        if v5:
            p.props = r.properties()
        p.payload = r.rest()
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.pkid = r.u16()
        p.reason = r.u8() if r.remaining() else 0
        if v5 and r.remaining():
            p.props = r.properties()
    elif ptype in (SUBACK, UNSUBACK):
        p.pkid = r.u16()
        if v5:
            p.props = r.properties()
        p.codes = list(r.rest())
    elif ptype in (DISCONNECT, AUTH):
        p.reason = r.u8() if r.remaining() else 0
        if r.remaining():
            p.props = r.properties()
    return p


class RawClient:
    """A blocking socket speaking MQTT bytes; every read has a deadline."""

    def __init__(self, addr, v5: bool = True):
        self.v5 = v5
        self.sock = socket.create_connection(addr, timeout=5)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False on timeout, sets `eof` when the peer closed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _frame(self) -> Optional[Tuple[int, bytes]]:
        if len(self.buf) < 2:
            return None
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            if i > 4:
                raise ValueError("bad remaining length from server")
        if len(self.buf) < i + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i:i + length])
        del self.buf[:i + length]
        return first, body

    def recv(self, timeout: float = 5.0) -> Optional[Packet]:
        """The next packet, or None on timeout or when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame:
                return parse(frame[0], frame[1], self.v5)
            if self.eof or not self._fill(deadline):
                return None

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        """The next packet, which must be of `ptype`."""
        p = self.recv(timeout)
        assert p is not None, f"expected packet type {ptype}, got {'EOF' if self.eof else 'timeout'}"
        assert p.type == ptype, f"expected packet type {ptype}, got {p.type} ({p.raw[:32].hex()})"
        return p

    def connect(self, client_id: str, **kwargs) -> Packet:
        self.send(connect(client_id, v5=self.v5, **kwargs))
        connack = self.expect(CONNACK)
        assert connack.reason == 0, f"CONNACK refused: 0x{connack.reason:02x}"
        return connack

    def subscribe(self, pkid: int, filters, props=None) -> Packet:
        self.send(subscribe(pkid, filters, v5=self.v5, props=props))
        return self.expect(SUBACK)

    def wait_closed(self, timeout: float = 5.0) -> List[Packet]:
        """Reads until the server closes the connection; returns the packets read meanwhile."""
        deadline = time.monotonic() + timeout
        packets = []
        while True:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            if p is not None:
                packets.append(p)
                continue
            assert self.eof, f"connection still open after {timeout} s; read {packets}"
            return packets

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
