//! A lean MQTT client on tokio, built on `fleetmq-codec`: connect (v3.1.1 or v5), subscribe,
//! publish and a read loop. The connection splits into a [`Reader`] and a [`Writer`] so a task can
//! read acks while another writes; writes are batched into one reused buffer and flushed with a
//! single `write_all`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use fleetmq_codec::{
    ByteString, Connect, Packet, Properties, Protocol, PubResp, Publish, QoS, Subscribe,
    SubscribeFilter, decode, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Largest packet the bench accepts from a broker; a state or bench payload is far smaller.
pub const MAX_PACKET: usize = 1 << 20;

/// How long a CONNACK or SUBACK may take before the bench gives up on that client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Protocol level to speak.
    pub protocol: Protocol,
    /// Client identifier (unique per run).
    pub client_id: String,
    /// Keep-alive in seconds. The default is the largest value (about 18 h) rather than 0 (off),
    /// which rumqttd refuses: a bench run never lasts long enough to need a PINGREQ.
    pub keep_alive: u16,
    /// Source address to bind before connecting, to spread many clients over several loopback
    /// addresses; `None` lets the kernel choose.
    pub bind: Option<IpAddr>,
    /// v5 Receive Maximum to announce; `None` leaves it at the protocol default (65,535).
    pub receive_maximum: Option<u16>,
    /// Initial capacity of each of the read and write buffers, bytes: small for the thousands of
    /// mostly idle drivers, larger for throughput clients.
    pub buffer: usize,
    /// v5 Session Expiry Interval to ask for (a session that outlives the connection; on a
    /// fleetmq cluster a durable one, kept in Redis); `None`: ends with the connection.
    pub session_expiry: Option<u32>,
}

impl ConnectOptions {
    /// Options for `client_id` with the largest keep-alive and no source binding.
    pub fn new(protocol: Protocol, client_id: String) -> ConnectOptions {
        ConnectOptions {
            protocol,
            client_id,
            keep_alive: u16::MAX,
            bind: None,
            receive_maximum: None,
            buffer: 16 * 1024,
            session_expiry: None,
        }
    }
}

/// What the broker said in CONNACK that the bench cares about.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The broker's Receive Maximum (v5), 65,535 when absent: caps the QoS 1/2 window.
    pub receive_maximum: u16,
}

/// The read half of a connection: buffered, cancel-safe (partial packets stay in `buf`).
pub struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    protocol: Protocol,
}

/// The write half: packets are queued into `buf` and sent by [`Writer::flush`].
pub struct Writer {
    wr: OwnedWriteHalf,
    buf: BytesMut,
    protocol: Protocol,
}

/// Opens a TCP connection (bound to `opts.bind` if given), sends CONNECT and waits for a
/// successful CONNACK.
///
/// # Errors
/// Connection refused, timeout, a malformed answer or a CONNACK with a failure code.
pub async fn connect(addr: SocketAddr, opts: &ConnectOptions) -> Result<(Reader, Writer, Session)> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, open(addr, opts.bind))
        .await
        .context("TCP connect timed out")??;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let mut reader = Reader {
        rd,
        buf: BytesMut::with_capacity(opts.buffer),
        protocol: opts.protocol,
    };
    let mut writer = Writer {
        wr,
        buf: BytesMut::with_capacity(opts.buffer),
        protocol: opts.protocol,
    };
    let properties = Properties {
        receive_maximum: opts.receive_maximum,
        session_expiry_interval: opts.session_expiry,
        ..Properties::default()
    };
    writer.queue(&Packet::Connect(Connect {
        protocol: opts.protocol,
        clean_start: true,
        keep_alive: opts.keep_alive,
        client_id: ByteString::from(opts.client_id.as_str()),
        will: None,
        username: None,
        password: None,
        properties,
    }))?;
    writer.flush().await?;
    let packet = tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.next())
        .await
        .context("no CONNACK in time")??;
    match packet {
        Some(Packet::ConnAck(ack)) if ack.code == 0 => Ok((
            reader,
            writer,
            Session {
                receive_maximum: ack.properties.receive_maximum.unwrap_or(u16::MAX),
            },
        )),
        Some(Packet::ConnAck(ack)) => bail!("CONNACK refused: code {:#04x}", ack.code),
        Some(other) => bail!("expected CONNACK, got {}", other.packet_type_name()),
        None => bail!("connection closed before CONNACK"),
    }
}

async fn open(addr: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream> {
    let Some(ip) = bind else {
        return Ok(TcpStream::connect(addr).await?);
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("bind {ip}"))?;
    Ok(socket.connect(addr).await?)
}

/// Joins the halves back into the socket, dropping both buffers: an idle client then costs
/// only its descriptor and kernel socket.
///
/// # Errors
/// The halves belong to different sockets (cannot happen for halves from one [`connect`]).
pub fn into_stream(reader: Reader, writer: Writer) -> Result<TcpStream> {
    Ok(reader.rd.reunite(writer.wr)?)
}

/// Subscribes to `filters` at `qos` with packet id 1 and waits for a SUBACK granting all of them.
///
/// # Errors
/// I/O, timeout, or a SUBACK with a failure code.
pub async fn subscribe(
    reader: &mut Reader,
    writer: &mut Writer,
    filters: &[String],
    qos: QoS,
) -> Result<()> {
    writer.queue(&Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: filters
            .iter()
            .map(|f| SubscribeFilter {
                filter: ByteString::from(f.as_str()),
                qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            })
            .collect(),
        properties: Properties::default(),
    }))?;
    writer.flush().await?;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let packet = tokio::time::timeout_at(deadline, reader.next())
            .await
            .context("no SUBACK in time")??;
        match packet {
            Some(Packet::SubAck(ack)) if ack.codes.iter().all(|&c| c < 0x80) => return Ok(()),
            Some(Packet::SubAck(ack)) => bail!("SUBACK refused: {:?}", ack.codes),
            // Retained messages may arrive before the SUBACK on some brokers; skip them.
            Some(_) => {}
            None => bail!("connection closed before SUBACK"),
        }
    }
}

/// A PUBLISH packet for `topic` carrying `payload`.
pub fn publish(topic: &ByteString, qos: QoS, pkid: u16, payload: Bytes) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.clone(),
        pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
        properties: Properties::default(),
        payload,
    })
}

impl Reader {
    /// The next packet, `None` when the broker closed the connection cleanly between packets.
    /// Cancel-safe: bytes already read stay buffered.
    ///
    /// # Errors
    /// I/O errors, a malformed packet, or a connection closed in the middle of a packet.
    pub async fn next(&mut self) -> Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.try_next()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("connection closed in the middle of a packet");
            }
        }
    }

    /// A packet already in the buffer, if a whole one is there.
    ///
    /// # Errors
    /// A malformed packet.
    pub fn try_next(&mut self) -> Result<Option<Packet>> {
        Ok(decode(&mut self.buf, self.protocol, MAX_PACKET)?)
    }

    /// Reads more bytes into the buffer; false at end of stream. Cancel-safe.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn fill(&mut self) -> Result<bool> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            // Grows with the traffic: a busy subscriber reads in large chunks, an idle one
            // keeps its small buffer.
            let more = self.buf.capacity().clamp(1024, 64 * 1024);
            self.buf.reserve(more);
        }
        Ok(self.rd.read_buf(&mut self.buf).await? > 0)
    }
}

impl Writer {
    /// Appends `packet` to the write buffer.
    ///
    /// # Errors
    /// A packet the codec cannot encode (too large, bad field).
    pub fn queue(&mut self, packet: &Packet) -> Result<()> {
        encode(packet, self.protocol, &mut self.buf)?;
        Ok(())
    }

    /// Appends an ack (PUBACK, PUBREC, PUBREL or PUBCOMP by `kind`) for `pkid`.
    ///
    /// # Errors
    /// As [`Writer::queue`].
    pub fn ack(&mut self, kind: AckKind, pkid: u16) -> Result<()> {
        let resp = PubResp::new(pkid);
        self.queue(&match kind {
            AckKind::Ack => Packet::PubAck(resp),
            AckKind::Rec => Packet::PubRec(resp),
            AckKind::Rel => Packet::PubRel(resp),
            AckKind::Comp => Packet::PubComp(resp),
        })
    }

    /// Overwrites the start of the last `payload_len` bytes queued (the payload of the PUBLISH
    /// just queued) with `stamp`; does nothing if fewer bytes are queued.
    pub fn stamp_tail(&mut self, payload_len: usize, stamp: &[u8]) {
        let Some(at) = self.buf.len().checked_sub(payload_len) else {
            return;
        };
        if let Some(dst) = self.buf.get_mut(at..at + stamp.len().min(payload_len)) {
            dst.copy_from_slice(&stamp[..dst.len()]);
        }
    }

    /// Bytes queued and not yet sent.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Sends everything queued.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Which acknowledgement [`Writer::ack`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK: QoS 1 acknowledgement.
    Ack,
    /// PUBREC: QoS 2, step 1.
    Rec,
    /// PUBREL: QoS 2, step 2.
    Rel,
    /// PUBCOMP: QoS 2, step 3.
    Comp,
}

/// Parses a protocol name as given on the command line: `3.1.1`/`4`/`v311` or `5`/`v5`.
///
/// # Errors
/// Any other text.
pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_lowercase().as_str() {
        "3.1.1" | "4" | "v311" | "311" => Ok(Protocol::V311),
        "5" | "5.0" | "v5" => Ok(Protocol::V5),
        other => Err(format!("unknown protocol {other:?}: use 3.1.1 or 5")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn protocols_parse() {
        assert_eq!(parse_protocol("3.1.1"), Ok(Protocol::V311));
        assert_eq!(parse_protocol("V5"), Ok(Protocol::V5));
        assert!(parse_protocol("6").is_err());
    }

    /// A fake broker answering CONNACK then SUBACK: the client's handshake and framing work
    /// against bytes written by the codec on the other side.
    #[tokio::test]
    async fn connect_and_subscribe_against_a_scripted_peer() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (rd, wr) = stream.into_split();
            let mut r = Reader {
                rd,
                buf: BytesMut::new(),
                protocol: Protocol::V5,
            };
            let mut w = Writer {
                wr,
                buf: BytesMut::new(),
                protocol: Protocol::V5,
            };
            let Some(Packet::Connect(c)) = r.next().await? else {
                bail!("no CONNECT");
            };
            assert_eq!(c.client_id, "t1");
            w.queue(&Packet::ConnAck(fleetmq_codec::ConnAck {
                session_present: false,
                code: 0,
                properties: Properties {
                    receive_maximum: Some(20),
                    ..Properties::default()
                },
            }))?;
            w.flush().await?;
            let Some(Packet::Subscribe(s)) = r.next().await? else {
                bail!("no SUBSCRIBE");
            };
            w.queue(&Packet::SubAck(fleetmq_codec::SubAck {
                pkid: s.pkid,
                codes: vec![1],
                properties: Properties::default(),
            }))?;
            w.flush().await?;
            Ok(())
        });
        let (mut r, mut w, session) =
            connect(addr, &ConnectOptions::new(Protocol::V5, "t1".into())).await?;
        assert_eq!(session.receive_maximum, 20);
        subscribe(&mut r, &mut w, &["a/#".to_string()], QoS::AtLeastOnce).await?;
        server.await??;
        Ok(())
    }
}
