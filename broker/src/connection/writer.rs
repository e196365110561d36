//! The writing half of a connection: turns [`Outgoing`] items into packets (applying the
//! client's topic aliases, maximum packet size and the remaining message expiry), batches them
//! into one buffer and writes it. When the router found the link full, it tells the router
//! once the channel has drained.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

use fleetmq_codec::{
    ByteString, BytesMut, Disconnect, Packet, Properties, Protocol, PubResp, Publish, QoS, encode,
    encoded_len,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::{ConnLink, LINK_CAPACITY, Outgoing};
use crate::context::Context;
use crate::router::RouterMsg;

/// Bytes gathered before a write; bounds the writer's buffer.
const BATCH_BYTES: usize = 64 * 1024;

/// Longest a write may wait on a client that does not read.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Writer {
    pub protocol: Protocol,
    pub session: u64,
    /// The link's id and flags, but not its sender: the writer must see its channel close
    /// when the reader and the router let go of it.
    conn: u64,
    want_ready: Arc<AtomicBool>,
    close: CancellationToken,
    pub client_alias_max: u16,
    pub client_max_packet: usize,
    aliases: HashMap<ByteString, u16>,
}

/// Whether the writer keeps going after an item.
enum Next {
    Continue,
    Close,
}

impl Writer {
    pub fn new(
        protocol: Protocol,
        session: u64,
        link: ConnLink,
        client_alias_max: u16,
        client_max_packet: usize,
    ) -> Writer {
        Writer {
            protocol,
            session,
            conn: link.id,
            want_ready: link.want_ready,
            close: link.close,
            client_alias_max,
            client_max_packet,
            aliases: HashMap::new(),
        }
    }

    pub async fn run<W: AsyncWrite + Unpin>(
        mut self,
        ctx: Arc<Context>,
        mut wr: W,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let mut out = BytesMut::with_capacity(0);
        let close = self.close.clone();
        'outer: loop {
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                _ = close.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut next = self.put(&ctx, first, &mut out);
            while matches!(next, Next::Continue) && out.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(item) => next = self.put(&ctx, item, &mut out),
                    Err(_) => break,
                }
            }
            if !out.is_empty() {
                let n = out.len();
                // A client that stops reading for WRITE_TIMEOUT is cut off, so its connection
                // slot and buffers are not held forever.
                tokio::select! {
                    biased;
                    r = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out)) => {
                        if !matches!(r, Ok(Ok(()))) {
                            break 'outer;
                        }
                    }
                    _ = close.cancelled() => break 'outer,
                }
                ctx.metrics.bytes_sent.fetch_add(n as u64, Relaxed);
                out.clear();
                if rx.is_empty() {
                    // Idle: an idle connection keeps no write buffer.
                    out = BytesMut::new();
                }
            }
            if matches!(next, Next::Close) {
                break;
            }
            if self.want_ready.load(SeqCst)
                && rx.capacity() > LINK_CAPACITY / 2
                && self.want_ready.swap(false, SeqCst)
            {
                let _ = ctx.ready.send((self.session, self.conn));
            }
        }
        // A DISCONNECT queued when the connection was told to close still goes out, briefly.
        while let Ok(item) = rx.try_recv() {
            if let Outgoing::Disconnect { .. } = item {
                self.put(&ctx, item, &mut out);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wr.write_all(&out))
                    .await;
                break;
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wr.shutdown()).await;
        self.close.cancel();
    }

    fn put(&mut self, ctx: &Context, item: Outgoing, out: &mut BytesMut) -> Next {
        let packet = match item {
            Outgoing::Publish {
                delivery,
                pkid,
                dup,
            } => {
                let m = &delivery.message;
                let mut topic = m.topic.clone();
                let mut new_alias = None;
                let properties = if self.protocol == Protocol::V5 {
                    let mut p = m.properties.clone();
                    // Read the clock only for the messages that expire.
                    p.message_expiry_interval = m
                        .expires_at
                        .and_then(|_| m.remaining_expiry(Instant::now()));
                    p.subscription_identifiers = delivery.sub_ids;
                    if self.client_alias_max > 0 {
                        if let Some(a) = self.aliases.get(&topic) {
                            p.topic_alias = Some(*a);
                            topic = ByteString::new();
                        } else if self.aliases.len() < usize::from(self.client_alias_max) {
                            // Registered below, once the packet is known to be sent.
                            new_alias = Some(self.aliases.len() as u16 + 1);
                            p.topic_alias = new_alias;
                        }
                    }
                    p
                } else {
                    Properties::default()
                };
                let publish = Publish {
                    dup,
                    qos: delivery.qos,
                    retain: delivery.retain,
                    topic,
                    pkid,
                    properties,
                    payload: m.payload.clone(),
                };
                let packet = Packet::Publish(publish);
                if encoded_len(&packet, self.protocol) > self.client_max_packet {
                    // Too large for this client: discarded as if delivered (MQTT 5 §3.1.2.25).
                    ctx.metrics.messages_dropped.fetch_add(1, Relaxed);
                    if delivery.qos != QoS::AtMostOnce {
                        // Rare: never hold the writer on it (a full router queue hands the
                        // completion to a task of its own).
                        let done = RouterMsg::Complete {
                            session: self.session,
                            pkid,
                        };
                        if let Err(tokio::sync::mpsc::error::TrySendError::Full(done)) =
                            ctx.router.try_send(done)
                        {
                            let router = ctx.router.clone();
                            tokio::spawn(async move { router.send(done).await });
                        }
                    }
                    return Next::Continue;
                }
                if let Some(a) = new_alias {
                    self.aliases.insert(m.topic.clone(), a);
                }
                ctx.metrics.messages_sent.fetch_add(1, Relaxed);
                packet
            }
            Outgoing::PubRel(pkid) => Packet::PubRel(PubResp::new(pkid)),
            Outgoing::Packet(p) => *p,
            Outgoing::Ack(ack) => ack.packet(),
            Outgoing::Disconnect { reason, message } => {
                if self.protocol == Protocol::V5 {
                    let mut d = Disconnect::new(reason);
                    d.properties.reason_string = message.map(Into::into);
                    let _ = encode(&Packet::Disconnect(d), self.protocol, out);
                }
                return Next::Close;
            }
        };
        if encode(&packet, self.protocol, out).is_err() {
            tracing::warn!(
                session = self.session,
                "dropped a packet that cannot be encoded"
            );
        }
        Next::Continue
    }
}
