//! Handling what a connected client sends: PUBLISH (topic aliases, flow control, QoS
//! acknowledgements), the QoS 2 handshakes, SUBSCRIBE/UNSUBSCRIBE, PINGREQ and DISCONNECT.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use fleetmq_codec::{
    ByteString, BytesMut, Packet, Properties, Protocol, PubResp, Publish, QoS, SubAck, Subscribe,
    UnsubAck, Unsubscribe, encode, reason,
};
use tokio::sync::oneshot;

use super::link::Ack;
use crate::auth::Identity;
use crate::context::Context;
use crate::ingest::topics::{DriverTopic, driver_topic};
use crate::message::{Message, Origin};
use crate::router::subscriptions::SubOptions;
use crate::router::{RouterMsg, SubRequest};
use crate::topic;

/// What the reader does after a packet.
pub enum Flow {
    Continue,
    /// The client sent DISCONNECT.
    Disconnected {
        will: bool,
        expiry: Option<u32>,
    },
    /// Close with this v5 reason code.
    Violation {
        code: u8,
        message: &'static str,
    },
}

// Empty tables cost their size in every idle connection; a boxed one costs a pointer.
#[allow(clippy::box_collection)]
pub struct Inbound {
    ctx: Arc<Context>,
    protocol: Protocol,
    session: u64,
    identity: Arc<Identity>,
    /// Acknowledgements and other answers to the client, encoded, for the connection to
    /// write.
    replies: BytesMut,
    // The three collections below are boxed on first use: most connections never need
    // them, and every idle connection would hold their empty tables.
    /// Topic aliases the client set up towards us.
    aliases: Option<Box<HashMap<u16, ByteString>>>,
    /// QoS 2 publishes received and not yet released: bounded by our receive maximum.
    unreleased: Option<Box<HashSet<u16>>>,
    connect_expiry: u32,
    /// Vehicles this connection published locations for: they go offline when it closes.
    vehicles: Option<Box<HashSet<Box<str>>>>,
}

/// Vehicles one connection is remembered to speak for (a gateway may publish for many).
const MAX_VEHICLES_PER_CONNECTION: usize = 4096;

fn violation(code: u8, message: &'static str) -> Flow {
    Flow::Violation { code, message }
}

impl Inbound {
    pub fn new(
        ctx: Arc<Context>,
        protocol: Protocol,
        session: u64,
        identity: Arc<Identity>,
        connect_expiry: u32,
    ) -> Inbound {
        Inbound {
            ctx,
            protocol,
            session,
            identity,
            replies: BytesMut::new(),
            aliases: None,
            unreleased: None,
            connect_expiry,
            vehicles: None,
        }
    }

    /// Vehicles this connection published locations for.
    pub fn vehicles(&self) -> impl Iterator<Item = &str> {
        self.vehicles.iter().flat_map(|v| v.iter()).map(|v| &**v)
    }

    /// Forgets an unreleased QoS 2 packet id.
    fn release(&mut self, pkid: u16) {
        if let Some(u) = &mut self.unreleased {
            u.remove(&pkid);
        }
    }

    /// Moves the answers produced so far to the end of `out`.
    pub fn replies_into(&mut self, out: &mut BytesMut) {
        if self.replies.is_empty() {
            return;
        }
        if out.is_empty() {
            *out = std::mem::take(&mut self.replies);
        } else {
            out.extend_from_slice(&self.replies);
            self.replies = BytesMut::new();
        }
    }

    fn send(&mut self, packet: Packet) {
        if encode(&packet, self.protocol, &mut self.replies).is_err() {
            tracing::warn!(
                session = self.session,
                "dropped a reply that cannot be encoded"
            );
        }
    }

    fn ack(&mut self, ack: Ack) {
        self.send(ack.packet());
    }

    async fn router(&self, msg: RouterMsg) -> bool {
        self.ctx.router.send(msg).await.is_ok()
    }

    /// Handles one packet. Not an `async fn`: its future is allocated per packet, so a
    /// PUBLISH or an acknowledgement (nearly all traffic) gets a future the size of what it
    /// needs, not of the largest packet kind and the packet itself.
    pub fn handle(&mut self, packet: Packet) -> Pin<Box<dyn Future<Output = Flow> + Send + '_>> {
        match packet {
            Packet::Publish(p) => Box::pin(self.publish(p)),
            Packet::PubAck(r) | Packet::PubComp(r) => Box::pin(self.completed(r.pkid)),
            other => Box::pin(self.handle_other(other)),
        }
    }

    /// PUBACK or PUBCOMP: the delivery is done.
    async fn completed(&self, pkid: u16) -> Flow {
        self.router(RouterMsg::Complete {
            session: self.session,
            pkid,
        })
        .await;
        Flow::Continue
    }

    async fn handle_other(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Publish(p) => self.publish(p).await,
            Packet::PubAck(r) | Packet::PubComp(r) => self.completed(r.pkid).await,
            Packet::PubRec(r) => {
                if r.reason >= 0x80 {
                    self.router(RouterMsg::Complete {
                        session: self.session,
                        pkid: r.pkid,
                    })
                    .await;
                } else {
                    self.router(RouterMsg::Received {
                        session: self.session,
                        pkid: r.pkid,
                    })
                    .await;
                    self.send(Packet::PubRel(PubResp::new(r.pkid)));
                }
                Flow::Continue
            }
            Packet::PubRel(r) => {
                self.release(r.pkid);
                self.router(RouterMsg::Release {
                    session: self.session,
                    pkid: r.pkid,
                })
                .await;
                self.ack(Ack::Completed(r.pkid));
                Flow::Continue
            }
            // Boxed, like the SOS write below: rare, and their states would otherwise size
            // the future of every packet, which is allocated and moved per packet.
            Packet::Subscribe(s) => Box::pin(self.subscribe(s)).await,
            Packet::Unsubscribe(u) => Box::pin(self.unsubscribe(u)).await,
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(d) => {
                let expiry = d.properties.session_expiry_interval;
                if expiry.is_some_and(|e| e > 0) && self.connect_expiry == 0 {
                    return violation(
                        reason::PROTOCOL_ERROR,
                        "session expiry cannot be set at DISCONNECT when CONNECT had 0",
                    );
                }
                Flow::Disconnected {
                    will: d.reason == reason::DISCONNECT_WITH_WILL,
                    expiry,
                }
            }
            Packet::Auth(_) => violation(
                reason::BAD_AUTHENTICATION_METHOD,
                "enhanced authentication is not supported",
            ),
            Packet::Connect(_) => violation(reason::PROTOCOL_ERROR, "second CONNECT"),
            _ => violation(reason::PROTOCOL_ERROR, "packet type not sent by clients"),
        }
    }

    pub(super) async fn publish(&mut self, mut p: Publish) -> Flow {
        let received = Instant::now();
        self.ctx.metrics.messages_received.fetch_add(1, Relaxed);
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.ctx.limits.topic_alias_maximum {
                return violation(reason::TOPIC_ALIAS_INVALID, "topic alias out of range");
            }
            if p.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.get(&alias)) {
                    Some(t) => p.topic = t.clone(),
                    None => return violation(reason::PROTOCOL_ERROR, "unknown topic alias"),
                }
            } else {
                self.aliases
                    .get_or_insert_default()
                    .insert(alias, p.topic.clone());
            }
        }
        if let Err(e) = topic::validate_name(&p.topic) {
            return violation(reason::TOPIC_NAME_INVALID, e.as_str());
        }
        if p.qos == QoS::ExactlyOnce {
            let unreleased = self.unreleased.get_or_insert_default();
            if !unreleased.contains(&p.pkid) {
                if unreleased.len() >= usize::from(self.ctx.limits.receive_maximum) {
                    return violation(
                        reason::RECEIVE_MAXIMUM_EXCEEDED,
                        "more QoS 2 publishes unreleased than our receive maximum",
                    );
                }
                unreleased.insert(p.pkid);
            }
        }
        let (qos, pkid) = (p.qos, p.pkid);
        if !self.ctx.acl.can_publish(&self.identity, &p.topic) {
            self.ctx.metrics.publishes_denied.fetch_add(1, Relaxed);
            self.release(pkid);
            self.refuse_publish(
                qos,
                pkid,
                reason::NOT_AUTHORIZED,
                "not authorized to publish to this topic",
            );
            return Flow::Continue;
        }
        p.properties.subscription_identifiers.clear();
        let expires_at = p
            .properties
            .message_expiry_interval
            .take()
            .map(|s| Instant::now() + Duration::from_secs(s.into()));
        let message = Arc::new(Message {
            topic: own_topic(p.topic),
            payload: own_payload(p.payload),
            qos,
            retain: p.retain,
            properties: p.properties,
            expires_at,
            origin: Origin::Session(self.session),
        });
        match driver_topic(&message.topic) {
            Some(DriverTopic::Location(vehicle)) => {
                match self
                    .ctx
                    .ingest
                    .location(vehicle, &message.payload, received)
                {
                    Ok(outputs) => {
                        let vehicles = self.vehicles.get_or_insert_default();
                        if vehicles.len() < MAX_VEHICLES_PER_CONNECTION {
                            vehicles.insert(vehicle.into());
                        }
                        for m in outputs {
                            self.router(RouterMsg::Publish {
                                message: m,
                                qos2_pkid: None,
                            })
                            .await;
                        }
                    }
                    Err(r) => {
                        self.release(pkid);
                        let text = format!("{}: {}", r.field, r.message);
                        self.refuse_publish(qos, pkid, reason::PAYLOAD_FORMAT_INVALID, &text);
                        return Flow::Continue;
                    }
                }
            }
            Some(DriverTopic::Sos(vehicle)) => {
                // Persisted before anyone (hub, subscribers) is notified; the PUBACK below
                // waits for it too: at most 2 s, then the SOS is delivered anyway.
                if let Some(store) = self.ctx.persist.get() {
                    Box::pin(store.sos(vehicle, &message.payload)).await;
                }
                let event = self.ctx.ingest.sos(vehicle, &message.payload);
                self.router(RouterMsg::Publish {
                    message: event,
                    qos2_pkid: None,
                })
                .await;
            }
            None => {}
        }
        let qos2_pkid = (qos == QoS::ExactlyOnce).then_some((self.session, pkid));
        self.router(RouterMsg::Publish { message, qos2_pkid }).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack(Ack::Received(pkid)),
            QoS::ExactlyOnce => self.ack(Ack::Recorded(pkid)),
        }
        Flow::Continue
    }

    /// Answers a refused QoS 1/2 publish with a reason code (v5) or a plain ack (3.1.1, which
    /// has no way to say no); a refused QoS 0 publish is dropped.
    fn refuse_publish(&mut self, qos: QoS, pkid: u16, code: u8, message: &str) {
        let mut ack = PubResp::new(pkid);
        if self.protocol == Protocol::V5 {
            ack.reason = code;
            ack.properties.reason_string = Some(message.to_owned().into());
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(ack)),
            QoS::ExactlyOnce => self.send(Packet::PubRec(ack)),
        }
    }

    async fn subscribe(&mut self, s: Subscribe) -> Flow {
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut requests = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            let denied = match topic::parse_shared(&f.filter) {
                Err(_) => Some(reason::TOPIC_FILTER_INVALID),
                Ok((Some(_), _)) if f.no_local => {
                    return violation(reason::PROTOCOL_ERROR, "no-local on a shared subscription");
                }
                Ok(_) if !self.ctx.acl.can_subscribe(&self.identity, &f.filter) => {
                    Some(reason::NOT_AUTHORIZED)
                }
                Ok(_) => None,
            };
            requests.push(SubRequest {
                opts: SubOptions {
                    qos: f.qos,
                    no_local: f.no_local,
                    retain_as_published: f.retain_as_published,
                    id: sub_id,
                },
                filter: f.filter,
                retain_handling: f.retain_handling,
                denied,
            });
        }
        let (tx, rx) = oneshot::channel();
        let requests_copy = requests.clone();
        if !self
            .router(RouterMsg::Subscribe {
                session: self.session,
                requests,
                reply: tx,
            })
            .await
        {
            return Flow::Continue;
        }
        let Ok((codes, new)) = rx.await else {
            return Flow::Continue;
        };
        let mut properties = Properties::default();
        if codes.iter().any(|c| *c >= 0x80) && self.protocol == Protocol::V5 {
            properties.reason_string = Some("one or more filters refused".into());
        }
        self.send(Packet::SubAck(SubAck {
            pkid: s.pkid,
            codes,
            properties,
        }));
        self.router(RouterMsg::SendRetained {
            session: self.session,
            requests: requests_copy,
            new,
        })
        .await;
        Flow::Continue
    }

    async fn unsubscribe(&mut self, u: Unsubscribe) -> Flow {
        let (tx, rx) = oneshot::channel();
        if !self
            .router(RouterMsg::Unsubscribe {
                session: self.session,
                filters: u.filters,
                reply: tx,
            })
            .await
        {
            return Flow::Continue;
        }
        let Ok(codes) = rx.await else {
            return Flow::Continue;
        };
        self.send(Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            codes,
            properties: Properties::default(),
        }));
        Flow::Continue
    }
}

/// Payloads up to this size are copied out of the read buffer, so that a small message kept
/// in a queue or the retained store does not pin the (possibly much larger) buffer it was read
/// into; larger payloads dominate their buffer anyway and stay zero-copy.
const COPY_PAYLOAD_BELOW: usize = 64 * 1024;

fn own_topic(topic: ByteString) -> ByteString {
    ByteString::from(&*topic)
}

fn own_payload(payload: fleetmq_codec::Bytes) -> fleetmq_codec::Bytes {
    if payload.len() < COPY_PAYLOAD_BELOW {
        fleetmq_codec::Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}
