//! Handling what a connected client sends: PUBLISH (topic aliases, flow control, QoS
//! acknowledgements), the QoS 2 handshakes, SUBSCRIBE/UNSUBSCRIBE, PINGREQ, DISCONNECT and
//! AUTH (re-authentication with a fresh JWT, `reauth`).
//!
//! Acknowledgements carry a reason string or user properties only when the client did not set
//! Request Problem Information to 0 and the packet still fits its Maximum Packet Size
//! (MQTT 5.0 §3.1.2.11.7, §3.1.2.11.4); otherwise they go out without them. A PUBREL or PUBREC
//! for a packet identifier nobody holds gets PUBCOMP / PUBREL 0x92 (v5).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use fleetmq_codec::{
    ByteString, BytesMut, Packet, Properties, Protocol, PubResp, QoS, SubAck, Subscribe, UnsubAck,
    Unsubscribe, encode, reason,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

use crate::auth::Identity;
use crate::context::Context;
use crate::link::{Ack, RouterMsg, SessionId, SubOptions, SubRequest};
use crate::topic;

mod publish;
mod reauth;

/// What the reader does after a packet.
pub enum Flow {
    Continue,
    /// The client sent DISCONNECT.
    Disconnected {
        will: bool,
        expiry: Option<u32>,
    },
    /// The client re-authenticated (AUTH 0x19): its token now expires at this Unix second.
    Reauthenticated {
        expires_at: Option<u64>,
    },
    /// Close with this v5 reason code.
    Violation {
        code: u8,
        message: &'static str,
    },
}

/// What handling a packet takes: nothing more, or a future to await.
pub enum Handling<'a> {
    Done(Flow),
    Later(Pin<Box<dyn Future<Output = Flow> + Send + 'a>>),
}

impl Handling<'_> {
    /// The flow, once whatever was left is done.
    pub async fn finish(self) -> Flow {
        match self {
            Handling::Done(flow) => flow,
            Handling::Later(rest) => rest.await,
        }
    }
}

// Empty tables cost their size in every idle connection; a boxed one costs a pointer.
#[allow(clippy::box_collection)]
pub struct Inbound {
    ctx: Arc<Context>,
    protocol: Protocol,
    session: SessionId,
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
    vehicles: Option<Box<crate::hash::FastSet<Box<str>>>>,
    /// `--acl` publish decisions by topic (boxed on first use, and used only when there are
    /// rules): a publisher sends to a few topics over and over, and a long ACL would otherwise
    /// cost a match per rule per PUBLISH.
    may_publish: Option<Box<HashMap<ByteString, bool>>>,
    /// The client's Maximum Packet Size; `usize::MAX` when it set none.
    client_max_packet: usize,
    /// v5 Request Problem Information was not 0: reason strings are welcome.
    problem_information: bool,
}

/// Vehicles one connection is remembered to speak for (a gateway may publish for many).
const MAX_VEHICLES_PER_CONNECTION: usize = 4096;

/// Topics whose publish decision one connection remembers; past this the cache starts over
/// (the identity and the ACL do not change while a connection lasts, so nothing goes stale).
const PUBLISH_DECISIONS: usize = 256;

fn violation(code: u8, message: &'static str) -> Flow {
    Flow::Violation { code, message }
}

impl Inbound {
    pub fn new(
        ctx: Arc<Context>,
        protocol: Protocol,
        session: SessionId,
        identity: Arc<Identity>,
        connect_expiry: u32,
        client_max_packet: usize,
        problem_information: bool,
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
            may_publish: None,
            client_max_packet,
            problem_information,
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

    fn send(&mut self, mut packet: Packet) {
        if self.protocol == Protocol::V5 {
            fit_diagnostics(
                &mut packet,
                self.client_max_packet,
                self.problem_information,
            );
        }
        if encode(&packet, self.protocol, &mut self.replies).is_err() {
            tracing::warn!(
                session = self.session.get(),
                "dropped a reply that cannot be encoded"
            );
        }
    }

    /// Whether this client may publish to `topic` (a valid topic name), from the cache when
    /// the ACL has rules.
    fn may_publish(&mut self, topic: &str) -> bool {
        let acl = &self.ctx.acl;
        if acl.is_empty() {
            return acl.can_publish(&self.identity, topic);
        }
        let cache = self.may_publish.get_or_insert_default();
        if let Some(&ok) = cache.get(topic) {
            return ok;
        }
        let ok = acl.can_publish(&self.identity, topic);
        if cache.len() >= PUBLISH_DECISIONS {
            cache.clear();
        }
        // An owned copy: the topic is a slice of the read buffer.
        cache.insert(ByteString::from(topic), ok);
        ok
    }

    fn ack(&mut self, ack: Ack) {
        self.send(ack.packet());
    }

    async fn router(&self, msg: RouterMsg) -> bool {
        self.ctx.router.send(msg).await.is_ok()
    }

    /// Handles one packet. Not an `async fn`: a PUBLISH or an acknowledgement (nearly all
    /// traffic) is handled without a future when the router has room; anything that must
    /// wait gets a boxed future the size of what it needs, not of every packet kind.
    /// `awaited`: for a PUBREC, whether this connection sent a QoS 2 PUBLISH with that packet
    /// identifier that is not complete yet (the connection's writer knows).
    pub fn handle(&mut self, packet: Packet, awaited: bool) -> Handling<'_> {
        match packet {
            Packet::Publish(p) => self.publish(p),
            Packet::PubRec(r) if !awaited => {
                // MQTT 5.0 §4.3.3: PUBREL 0x92 for an identifier not in flight (3.1.1: a
                // plain PUBREL, the encoder leaves the code out).
                let mut rel = PubResp::new(r.pkid);
                rel.reason = reason::PACKET_IDENTIFIER_NOT_FOUND;
                self.send(Packet::PubRel(rel));
                Handling::Done(Flow::Continue)
            }
            Packet::PubAck(r) | Packet::PubComp(r) => {
                let done = RouterMsg::PubAckOrComp {
                    session: self.session,
                    pkid: r.pkid,
                };
                match self.ctx.router.try_send(done) {
                    Err(TrySendError::Full(_)) => Handling::Later(Box::pin(self.completed(r.pkid))),
                    _ => Handling::Done(Flow::Continue),
                }
            }
            other => Handling::Later(Box::pin(self.handle_other(other))),
        }
    }

    /// PUBACK or PUBCOMP: the delivery is done.
    async fn completed(&self, pkid: u16) -> Flow {
        self.router(RouterMsg::PubAckOrComp {
            session: self.session,
            pkid,
        })
        .await;
        Flow::Continue
    }

    async fn handle_other(&mut self, packet: Packet) -> Flow {
        match packet {
            // `handle` takes these without a future; here only for completeness.
            Packet::Publish(p) => self.publish(p).finish().await,
            Packet::PubAck(r) | Packet::PubComp(r) => self.completed(r.pkid).await,
            Packet::PubRec(r) => {
                if r.reason >= 0x80 {
                    self.router(RouterMsg::PubAckOrComp {
                        session: self.session,
                        pkid: r.pkid,
                    })
                    .await;
                } else {
                    self.router(RouterMsg::PubRec {
                        session: self.session,
                        pkid: r.pkid,
                    })
                    .await;
                    self.send(Packet::PubRel(PubResp::new(r.pkid)));
                }
                Flow::Continue
            }
            Packet::PubRel(r) => {
                let expected = self
                    .unreleased
                    .as_ref()
                    .is_some_and(|u| u.contains(&r.pkid));
                self.release(r.pkid);
                // One this connection did not see may still be the session's, from before a
                // reconnect: only the router knows.
                let (known, reply) = if expected {
                    (None, None)
                } else {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                };
                self.router(RouterMsg::PubRel {
                    session: self.session,
                    pkid: r.pkid,
                    known,
                })
                .await;
                let held = match reply {
                    None => true,
                    Some(rx) => rx.await.unwrap_or(false),
                };
                if held {
                    self.ack(Ack::Completed(r.pkid));
                } else {
                    let mut comp = PubResp::new(r.pkid);
                    comp.reason = reason::PACKET_IDENTIFIER_NOT_FOUND;
                    self.send(Packet::PubComp(comp));
                }
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
            Packet::Auth(a) => self.reauthenticate(a),
            Packet::Connect(_) => violation(reason::PROTOCOL_ERROR, "second CONNECT"),
            _ => violation(reason::PROTOCOL_ERROR, "packet type not sent by clients"),
        }
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
        self.router(RouterMsg::SubAckSent {
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

/// Takes the reason string and user properties off an acknowledgement when the client asked
/// for no problem information, or when they would make the packet larger than the client's
/// Maximum Packet Size (MQTT 5.0 §3.1.2.11.7 and §3.1.2.11.4: the packet then goes without
/// them).
pub(super) fn fit_diagnostics(packet: &mut Packet, max: usize, problem_information: bool) {
    if diagnostics(packet).is_none_or(|p| p.reason_string.is_none() && p.user_properties.is_empty())
    {
        return;
    }
    // CONNACK and DISCONNECT may carry them whatever Request Problem Information says; their
    // size is still checked.
    let unwanted =
        !problem_information && !matches!(packet, Packet::Disconnect(_) | Packet::ConnAck(_));
    if (unwanted || fleetmq_codec::encoded_len(packet, Protocol::V5) > max)
        && let Some(p) = diagnostics(packet)
    {
        p.reason_string = None;
        p.user_properties.clear();
    }
}

/// The properties of a packet that may carry a reason string and user properties.
fn diagnostics(packet: &mut Packet) -> Option<&mut Properties> {
    match packet {
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            Some(&mut r.properties)
        }
        Packet::SubAck(s) => Some(&mut s.properties),
        Packet::UnsubAck(u) => Some(&mut u.properties),
        Packet::Disconnect(d) => Some(&mut d.properties),
        Packet::ConnAck(c) => Some(&mut c.properties),
        _ => None,
    }
}
