//! What a connection sends: turns [`Outgoing`] items into packets, applying the client's
//! topic aliases, maximum packet size and the remaining message expiry, and encodes them into
//! the connection's write buffer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fleetmq_codec::{
    ByteString, BytesMut, Disconnect, Packet, Protocol, PubResp, PublishRef, QoS, encode,
    encode_publish,
};

use super::inbound::fit_diagnostics;
use crate::context::Context;
use crate::link::{Delivery, Outgoing, RouterMsg, SessionId};

// Empty tables cost their size in every idle connection; a boxed one costs a pointer.
#[allow(clippy::box_collection)]
pub struct Outbound {
    pub protocol: Protocol,
    pub session: SessionId,
    pub client_alias_max: u16,
    pub client_max_packet: usize,
    /// v5 Request Problem Information was not 0.
    pub problem_information: bool,
    /// Topic aliases we set up towards the client; boxed on first use (most clients allow
    /// none, and every idle connection would hold the empty table).
    aliases: Option<Box<HashMap<ByteString, u16>>>,
    /// Packet identifiers of QoS 2 messages written on this connection and not yet complete,
    /// so that a PUBREC for any other gets PUBREL 0x92. Bounded by the session's in-flight
    /// window (identifiers are reused only after completion); boxed on first use.
    qos2: Option<Box<HashSet<u16>>>,
}

/// Whether the connection keeps going after an item.
pub enum Next {
    Continue,
    Close,
}

impl Outbound {
    pub fn new(
        protocol: Protocol,
        session: SessionId,
        client_alias_max: u16,
        client_max_packet: usize,
        problem_information: bool,
    ) -> Outbound {
        Outbound {
            protocol,
            session,
            client_alias_max,
            client_max_packet,
            problem_information,
            aliases: None,
            qos2: None,
        }
    }

    /// Notes an acknowledgement from the client; for a PUBREC, whether it answers a QoS 2
    /// message this connection sent and is still waiting on.
    pub fn acknowledged(&mut self, packet: &Packet) -> bool {
        let Some(set) = &mut self.qos2 else {
            return !matches!(packet, Packet::PubRec(_));
        };
        match packet {
            Packet::PubRec(r) if r.reason >= 0x80 => set.remove(&r.pkid),
            Packet::PubRec(r) => set.contains(&r.pkid),
            Packet::PubComp(r) | Packet::PubAck(r) => {
                set.remove(&r.pkid);
                true
            }
            _ => true,
        }
    }

    /// Encodes one delivery from the shared message's parts, with a topic alias when the
    /// client allows them: an alias already set up replaces the topic; a new one is set up
    /// when the packet still fits, else the full topic goes alone.
    fn publish(
        &mut self,
        ctx: &Context,
        delivery: &Delivery,
        pkid: u16,
        dup: bool,
        out: &mut BytesMut,
    ) {
        let m = &delivery.message;
        let v5 = self.protocol == Protocol::V5;
        let (known, new_alias) = match &self.aliases {
            _ if !v5 || self.client_alias_max == 0 => (None, None),
            Some(a) if a.contains_key(&m.topic) => (a.get(&m.topic).copied(), None),
            a => {
                let used = a.as_ref().map_or(0, |a| a.len());
                let free = used < usize::from(self.client_alias_max);
                (None, free.then(|| used as u16 + 1))
            }
        };
        let now = Instant::now();
        let mut written = self.write_publish(delivery, known.or(new_alias), pkid, dup, now, out);
        if matches!(written, Ok(false)) && new_alias.is_some() {
            // The alias property made it too large: the full topic alone may still fit.
            written = self.write_publish(delivery, None, pkid, dup, now, out);
        } else if let (Ok(true), Some(a)) = (&written, new_alias) {
            self.aliases
                .get_or_insert_default()
                .insert(m.topic.clone(), a);
        }
        match written {
            Ok(true) => {
                if delivery.qos == QoS::ExactlyOnce {
                    self.qos2.get_or_insert_default().insert(pkid);
                }
                ctx.metrics.messages_sent.fetch_add(1, Relaxed);
            }
            Ok(false) => {
                // Too large for this client: discarded as if delivered (MQTT 5 §3.1.2.25).
                ctx.metrics.messages_dropped.fetch_add(1, Relaxed);
                if delivery.qos != QoS::AtMostOnce {
                    // Rare: never hold the connection on it (a full router queue hands the
                    // completion to a task of its own).
                    let done = RouterMsg::PubAckOrComp {
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
                    session = self.session.get(),
                    "dropped a publish that cannot be encoded"
                );
            }
        }
    }

    /// Writes the PUBLISH with `alias` (the topic is left out when the alias is already known
    /// to the client); `Ok(false)` when it exceeds the client's Maximum Packet Size.
    fn write_publish(
        &self,
        delivery: &Delivery,
        alias: Option<u16>,
        pkid: u16,
        dup: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<bool, fleetmq_codec::EncodeError> {
        let m = &delivery.message;
        let v5 = self.protocol == Protocol::V5;
        // Not written at all in 3.1.1.
        let properties = if v5 {
            delivery.wire_properties(alias, now)
        } else {
            std::borrow::Cow::Borrowed(m.properties())
        };
        let aliased = alias.is_some_and(|a| {
            self.aliases
                .as_ref()
                .is_some_and(|t| t.get(&m.topic) == Some(&a))
        });
        let view = PublishRef {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: if aliased { "" } else { &m.topic },
            pkid,
            properties: &properties,
            payload: &m.payload,
        };
        encode_publish(&view, self.protocol, self.client_max_packet, out)
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
            Outgoing::PubRel(pkid) => {
                self.qos2.get_or_insert_default().insert(pkid);
                Packet::PubRel(PubResp::new(pkid))
            }
            Outgoing::Packet(p) => *p,
            Outgoing::Ack(ack) => ack.packet(),
            Outgoing::Disconnect { reason, message } => {
                if self.protocol == Protocol::V5 {
                    let mut d = Disconnect::new(reason);
                    d.properties.reason_string = message.map(Into::into);
                    let mut packet = Packet::Disconnect(d);
                    fit_diagnostics(&mut packet, self.client_max_packet, true);
                    let _ = encode(&packet, self.protocol, out);
                }
                return Next::Close;
            }
        };
        let mut packet = packet;
        if self.protocol == Protocol::V5 {
            fit_diagnostics(
                &mut packet,
                self.client_max_packet,
                self.problem_information,
            );
        }
        if encode(&packet, self.protocol, out).is_err() {
            tracing::warn!(
                session = self.session.get(),
                "dropped a packet that cannot be encoded"
            );
        }
        Next::Continue
    }
}
