"""Opens N idle SSE (`/api/v1/stream?vehicle=...`) or `/mqtt` (MQTT 3.1.1 over WebSocket, CONNECT
then silence) connections to a loopback fleetmq and prints the broker's RSS delta per connection.

Usage: python3 bench/idle_streams.py sse|mqtt HTTP_PORT N BROKER_PID
"""
import base64
import os
import socket
import sys
import time

kind, port, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) * 1024
def frame(payload):
    mask = os.urandom(4)
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
def connect_packet(cid):
    cid = cid.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(var)]) + var
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if kind == "sse":
        s.sendall(f"GET /api/v1/stream?vehicle=idle-{i} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = b""
        while b"snapshot" not in buf:
            buf += s.recv(4096)
    else:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        s.sendall(frame(connect_packet(f"idle-{os.getpid()}-{i}")))
        buf = buf.split(b"\r\n\r\n", 1)[1]
        while len(buf) < 6:  # binary frame header + CONNACK (4 bytes)
            buf += s.recv(4096)
        assert buf[2] == 0x20, buf
    socks.append(s)
last = rss()
for _ in range(25):
    time.sleep(0.2)
    now = rss()
    if abs(now - last) * 100 < last:
        break
    last = now
print(f"{kind} n={n} rss_before={before/1048576:.1f}MiB after={now/1048576:.1f}MiB per_conn={(now-before)/n:.0f}B")
