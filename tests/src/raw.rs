//! A blocking raw-socket MQTT client: sends bytes, frames what comes back, and never waits
//! without a deadline. Used for hostile input and for subscribers that stall on purpose.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::packets::{self, Version, kind};

/// Largest packet the harness accepts from the server (our tests send at most ~1 MiB).
const MAX_INBOUND: usize = 4 * 1024 * 1024;

/// One packet as received: the first byte and the body after the remaining length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    /// Packet type and flags.
    pub first: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
}

impl RawPacket {
    /// The packet type (upper nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// Reason code of a v5 DISCONNECT, CONNACK or ack: the first body byte after any packet
    /// identifier; 0 when the short form omits it.
    pub fn reason(&self) -> u8 {
        let offset = match self.kind() {
            kind::CONNACK => 1,
            kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => 2,
            _ => 0,
        };
        self.body.get(offset).copied().unwrap_or(0)
    }

    /// QoS of a PUBLISH (bits 1–2 of the first byte).
    pub fn qos(&self) -> u8 {
        (self.first >> 1) & 3
    }

    /// Packet identifier of a QoS 1/2 PUBLISH.
    pub fn publish_pkid(&self) -> Option<u16> {
        if self.kind() != kind::PUBLISH || self.qos() == 0 {
            return None;
        }
        let topic_len = usize::from(u16::from_be_bytes([
            *self.body.first()?,
            *self.body.get(1)?,
        ]));
        let id = self.body.get(2 + topic_len..4 + topic_len)?;
        Some(u16::from_be_bytes([id[0], id[1]]))
    }

    /// Session Present flag of a CONNACK.
    pub fn session_present(&self) -> bool {
        self.kind() == kind::CONNACK && self.body.first().is_some_and(|flags| flags & 1 == 1)
    }

    /// Payload of a PUBLISH (`version` decides whether a property block precedes it).
    pub fn publish_payload(&self, version: Version) -> Option<&[u8]> {
        if self.kind() != kind::PUBLISH {
            return None;
        }
        let topic_len = usize::from(u16::from_be_bytes([
            *self.body.first()?,
            *self.body.get(1)?,
        ]));
        let mut pos = 2 + topic_len;
        if self.qos() > 0 {
            pos += 2;
        }
        if version == Version::V5 {
            let (props_len, used) = read_varint(self.body.get(pos..)?)?;
            pos += used + props_len;
        }
        self.body.get(pos..)
    }
}

/// Reads a variable byte integer from the start of `data`: (value, bytes used).
fn read_varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in data.iter().take(4).enumerate() {
        value += usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A TCP connection speaking raw MQTT bytes.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    version: Version,
    closed: bool,
}

impl RawClient {
    /// Opens a TCP connection (sends nothing).
    ///
    /// # Errors
    /// The connection is refused.
    pub fn open(addr: SocketAddr, version: Version) -> Result<RawClient, HarnessError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
            version,
            closed: false,
        })
    }

    /// Opens a connection, sends CONNECT (clean start) and checks the CONNACK is a success.
    ///
    /// # Errors
    /// No CONNACK within 5 s, or a refusal.
    pub fn connect(
        addr: SocketAddr,
        version: Version,
        client_id: &str,
    ) -> Result<RawClient, HarnessError> {
        let connect = packets::connect(version, client_id, 60);
        Ok(RawClient::connect_with(addr, version, &connect)?.0)
    }

    /// Opens a connection, sends the given CONNECT bytes and returns the client with its
    /// (successful) CONNACK.
    ///
    /// # Errors
    /// No CONNACK within 5 s, or a refusal.
    pub fn connect_with(
        addr: SocketAddr,
        version: Version,
        connect: &[u8],
    ) -> Result<(RawClient, RawPacket), HarnessError> {
        let mut client = RawClient::open(addr, version)?;
        client.send(connect)?;
        let connack = client.expect(kind::CONNACK, Duration::from_secs(5))?;
        if connack.reason() != 0 {
            return Err(HarnessError::BadPacket(format!(
                "CONNACK refused: {connack:?}"
            )));
        }
        Ok((client, connack))
    }

    /// The protocol version this client's CONNECT used (decides how PUBLISH bodies parse).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// The socket is closed or reset.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// SUBSCRIBE and wait for its SUBACK; returns the granted codes.
    ///
    /// # Errors
    /// No SUBACK within 5 s.
    pub fn subscribe(&mut self, pkid: u16, filter: &str, qos: u8) -> Result<Vec<u8>, HarnessError> {
        self.send(&packets::subscribe(self.version, pkid, filter, qos))?;
        let suback = self.expect(kind::SUBACK, Duration::from_secs(5))?;
        let skip = if self.version == Version::V5 {
            let (len, used) = read_varint(suback.body.get(2..).unwrap_or_default())
                .ok_or_else(|| HarnessError::BadPacket("SUBACK properties".into()))?;
            2 + used + len
        } else {
            2
        };
        Ok(suback.body.get(skip..).unwrap_or_default().to_vec())
    }

    /// The next packet; `Ok(None)` once the server has closed the connection.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] when nothing complete arrives within `timeout`.
    pub fn read_packet(&mut self, timeout: Duration) -> Result<Option<RawPacket>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self.take_frame()? {
                return Ok(Some(packet));
            }
            if self.closed {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout(
                    timeout,
                    "a packet from the server".into(),
                ));
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
                // A reset after the server closed is still "closed" for our purposes.
                Err(_) => self.closed = true,
            }
        }
    }

    /// The next packet, which must be of `expected` kind.
    ///
    /// # Errors
    /// Timeout, a closed connection, or another packet kind.
    pub fn expect(&mut self, expected: u8, timeout: Duration) -> Result<RawPacket, HarnessError> {
        match self.read_packet(timeout)? {
            Some(p) if p.kind() == expected => Ok(p),
            Some(p) => Err(HarnessError::BadPacket(format!(
                "expected kind {expected}, got {p:?}"
            ))),
            None => Err(HarnessError::BadPacket(format!(
                "closed while expecting kind {expected}"
            ))),
        }
    }

    /// Reads until the server closes the connection; returns what it sent meanwhile.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] if the connection is still open after `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<RawPacket>, HarnessError> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(Some(p)) => seen.push(p),
                Ok(None) => return Ok(seen),
                Err(HarnessError::Timeout(..)) => {
                    return Err(HarnessError::Timeout(
                        timeout,
                        format!("the server to close the connection (read {seen:?})"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// PINGREQ → PINGRESP: proof that the connection (and the broker) still works.
    ///
    /// # Errors
    /// No PINGRESP within 5 s.
    pub fn ping(&mut self) -> Result<(), HarnessError> {
        self.send(&packets::pingreq())?;
        self.expect(kind::PINGRESP, Duration::from_secs(5))
            .map(|_| ())
    }

    fn take_frame(&mut self) -> Result<Option<RawPacket>, HarnessError> {
        let Some(header) = self.buf.get(1..) else {
            return Ok(None);
        };
        let Some((len, used)) = read_varint(header) else {
            if header.len() >= 4 {
                return Err(HarnessError::BadPacket(
                    "remaining length over 4 bytes".into(),
                ));
            }
            return Ok(None);
        };
        if len > MAX_INBOUND {
            return Err(HarnessError::BadPacket(format!("{len}-byte packet")));
        }
        let total = 1 + used + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let first = self.buf[0];
        let body = self.buf[1 + used..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(RawPacket { first, body }))
    }
}
