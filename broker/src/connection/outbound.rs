//! What a connection sends: turns [`Outgoing`] items into packets, applying the client's
//! topic aliases, maximum packet size and the remaining message expiry, and encodes them into
//! the connection's write buffer.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fleetmq_codec::{
    ByteString, BytesMut, Disconnect, Packet, Protocol, PubResp, PublishRef, QoS, encode,
    encode_publish,
};

use super::link::Outgoing;
use crate::context::Context;
use crate::router::RouterMsg;
use crate::router::session::Delivery;

// Empty tables cost their size in every idle connection; a boxed one costs a pointer.
#[allow(clippy::box_collection)]
pub struct Outbound {
    pub protocol: Protocol,
    pub session: u64,
    pub client_alias_max: u16,
    pub client_max_packet: usize,
    /// Topic aliases we set up towards the client; boxed on first use (most clients allow
    /// none, and every idle connection would hold the empty table).
    aliases: Option<Box<HashMap<ByteString, u16>>>,
}

/// Whether the connection keeps going after an item.
pub enum Next {
    Continue,
    Close,
}

impl Outbound {
    pub fn new(
        protocol: Protocol,
        session: u64,
        client_alias_max: u16,
        client_max_packet: usize,
    ) -> Outbound {
        Outbound {
            protocol,
            session,
            client_alias_max,
            client_max_packet,
            aliases: None,
        }
    }

    /// Encodes one delivery from the shared message's parts. Its v5 properties are the
    /// message's own unless this copy needs changes (remaining expiry, subscription
    /// identifiers, a topic alias): only then are they cloned.
    fn publish(
        &mut self,
        ctx: &Context,
        delivery: &Delivery,
        pkid: u16,
        dup: bool,
        out: &mut BytesMut,
    ) {
        let m = &delivery.message;
        let mut topic: &str = &m.topic;
        let mut new_alias = None;
        let own;
        let properties = if self.protocol == Protocol::V5
            && (m.expires_at.is_some()
                || m.properties().message_expiry_interval.is_some()
                || !delivery.sub_ids.is_empty()
                || !m.properties().subscription_identifiers.is_empty()
                || m.properties().topic_alias.is_some()
                || self.client_alias_max > 0)
        {
            let mut p = m.properties().clone();
            // Read the clock only for the messages that expire.
            p.message_expiry_interval = m
                .expires_at
                .and_then(|_| m.remaining_expiry(Instant::now()));
            p.subscription_identifiers.clone_from(&delivery.sub_ids);
            p.topic_alias = None;
            if self.client_alias_max > 0 {
                let aliases = self.aliases.get_or_insert_default();
                if let Some(a) = aliases.get(&m.topic) {
                    p.topic_alias = Some(*a);
                    topic = "";
                } else if aliases.len() < usize::from(self.client_alias_max) {
                    // Registered below, once the packet is known to be sent.
                    new_alias = Some(aliases.len() as u16 + 1);
                    p.topic_alias = new_alias;
                }
            }
            own = p;
            &own
        } else {
            // Not written at all in 3.1.1.
            m.properties()
        };
        let view = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            pkid,
            properties,
            payload: &m.payload,
        };
        match encode_publish(&view, self.protocol, self.client_max_packet, out) {
            Ok(true) => {
                if let (Some(a), Some(aliases)) = (new_alias, &mut self.aliases) {
                    aliases.insert(m.topic.clone(), a);
                }
                ctx.metrics.messages_sent.fetch_add(1, Relaxed);
            }
            Ok(false) => {
                // Too large for this client: discarded as if delivered (MQTT 5 §3.1.2.25).
                ctx.metrics.messages_dropped.fetch_add(1, Relaxed);
                if delivery.qos != QoS::AtMostOnce {
                    // Rare: never hold the connection on it (a full router queue hands the
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
            }
            Err(_) => {
                tracing::warn!(
                    session = self.session,
                    "dropped a publish that cannot be encoded"
                );
            }
        }
    }

    /// Encodes `item` into `out`; `Next::Close` after a DISCONNECT.
    pub fn put(&mut self, ctx: &Context, item: Outgoing, out: &mut BytesMut) -> Next {
        let packet = match item {
            Outgoing::Publish {
                delivery,
                pkid,
                dup,
            } => {
                self.publish(ctx, &delivery, pkid, dup, out);
                return Next::Continue;
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
