//! A PUBLISH from the client: topic aliases, QoS 2 bookkeeping and the ACL, the ingest hook
//! for driver topics, then routing and the acknowledgement.
//!
//! A driver's raw `fleet/{id}/location` publish (QoS 0/1, not retained) is not routed when no
//! subscription can match it: only its processed state and events are. Routing is tried without
//! waiting first: with room in the router's queue (the usual case)
//! a publish is handled without any future or allocation of its own. Only a full queue, or
//! an SOS that must be persisted before anyone hears of it, turns the rest into a future.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use fleetmq_codec::{ByteString, Bytes, Protocol, Publish, QoS, reason};
use tokio::sync::mpsc::error::TrySendError;

use super::{Ack, Flow, Handling, Inbound, MAX_VEHICLES_PER_CONNECTION, violation};
use crate::cluster::lease::LeaseError;
use crate::ingest::topics::{DriverTopic, driver_topic};
use crate::ingest::{LocationError, Source};
use crate::link::RouterMsg;
use crate::message::{Message, Origin};
use crate::topic;

/// Payloads up to this size are copied out of the read buffer, so that a small message kept
/// in a queue or the retained store does not pin the (possibly much larger) buffer it was read
/// into; larger payloads dominate their buffer anyway and stay zero-copy.
const COPY_PAYLOAD_BELOW: usize = 64 * 1024;

/// A publish the broker took: what goes to the router, in order, and what the client is owed.
struct Accepted {
    /// The ingest hook's outputs (processed state, events), routed before the message.
    outputs: Vec<Arc<Message>>,
    /// The message to route; `None` for a location publish nobody subscribes to, which is
    /// not routed (nor copied out of the read buffer).
    message: Option<Arc<Message>>,
    /// The vehicle of an SOS, persisted and announced before the message is routed.
    sos: Option<Box<str>>,
    /// With `--postgres`, a QoS 1/2 location whose rows must be committed before the ack
    /// (see `History::mark`).
    history_mark: Option<u64>,
    /// With `--cluster`, a QoS 1/2 location whose tracker must be in Redis before the ack, so
    /// that the node taking the vehicle over knows the fix (see `Store::mark`).
    state_mark: Option<u64>,
    qos: QoS,
    pkid: u16,
}

impl Inbound {
    pub(in crate::connection) fn publish(&mut self, p: Publish) -> Handling<'_> {
        if let Some(vehicle) = self.unleased_location(&p) {
            return Handling::Later(Box::pin(self.publish_leased(vehicle, p)));
        }
        self.publish_held(p)
    }

    /// With `--cluster`: the vehicle of a location publish this client may send and whose
    /// lease this node does not hold yet. Without it, or for a held vehicle, `None` at the
    /// cost of a map look-up.
    fn unleased_location(&mut self, p: &Publish) -> Option<Box<str>> {
        let leases = self.ctx.leases.get()?;
        let topic = match (p.topic.is_empty(), p.properties.topic_alias) {
            (false, _) => p.topic.clone(),
            (true, Some(alias)) => self.aliases.as_ref()?.get(&alias)?.clone(),
            (true, None) => return None,
        };
        let Some(DriverTopic::Location(vehicle)) = driver_topic(&topic) else {
            return None;
        };
        if leases.holds(vehicle) || topic::validate_name(&topic).is_err() {
            return None;
        }
        let vehicle: Box<str> = vehicle.into();
        // Only a publisher that may send the fix makes this node acquire the vehicle.
        self.may_publish(&topic).then_some(vehicle)
    }

    /// Acquires the vehicle's lease (its tracker comes from Redis), then handles the publish.
    /// Nothing is acknowledged for a fix that is not processed: while shutting down no ack at
    /// all (the client sends it again after reconnecting elsewhere); when another node keeps
    /// the vehicle, v5 PUBACK 0x83 with the reason, a 3.1.1 client is disconnected.
    async fn publish_leased(&mut self, vehicle: Box<str>, p: Publish) -> Flow {
        let Some(leases) = self.ctx.leases.get().cloned() else {
            return self.publish_held(p).finish().await;
        };
        match leases.acquire(&vehicle).await {
            Ok(()) => self.publish_held(p).finish().await,
            Err(LeaseError::ShuttingDown) => Flow::Continue,
            Err(e @ LeaseError::Busy(_)) => match (p.qos, self.protocol) {
                (QoS::AtMostOnce, _) => Flow::Continue,
                (qos, Protocol::V5) => {
                    let text = e.to_string();
                    self.refuse_publish(qos, p.pkid, reason::IMPLEMENTATION_SPECIFIC_ERROR, &text);
                    Flow::Continue
                }
                _ => violation(
                    reason::IMPLEMENTATION_SPECIFIC_ERROR,
                    "vehicle is processed by another node",
                ),
            },
        }
    }

    fn publish_held(&mut self, p: Publish) -> Handling<'_> {
        let accepted = match self.accept(p) {
            Ok(a) => a,
            Err(flow) => return Handling::Done(flow),
        };
        let Accepted {
            outputs,
            message,
            sos,
            history_mark,
            state_mark,
            qos,
            pkid,
        } = accepted;
        let message = match (sos, message) {
            (Some(vehicle), Some(message)) => {
                return Handling::Later(Box::pin(self.publish_sos(vehicle, message, qos, pkid)));
            }
            (_, message) => message,
        };
        let qos2_pkid = (qos == QoS::ExactlyOnce).then_some((self.session, pkid));
        let message = match message {
            Some(message) if self.ctx.near_retained_limit(&message) => {
                return Handling::Later(Box::pin(
                    self.publish_retained(outputs, message, qos, pkid),
                ));
            }
            Some(message)
                if qos != QoS::AtMostOnce && self.ctx.durable.get().is_some_and(|t| t.any()) =>
            {
                return Handling::Later(Box::pin(self.publish_persisted(
                    outputs,
                    message,
                    [history_mark, state_mark],
                    qos,
                    pkid,
                )));
            }
            message => message,
        };
        let mut pending = outputs
            .into_iter()
            .map(|message| RouterMsg::Publish {
                message,
                qos2_pkid: None,
            })
            .chain(message.map(|message| RouterMsg::Publish { message, qos2_pkid }));
        while let Some(msg) = pending.next() {
            match self.ctx.router.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    let rest: Vec<RouterMsg> = std::iter::once(msg).chain(pending).collect();
                    return Handling::Later(Box::pin(self.route_then_ack(
                        rest,
                        [history_mark, state_mark],
                        qos,
                        pkid,
                    )));
                }
                // Shutting down: nothing more is routed, as with a waiting send.
                Err(TrySendError::Closed(_)) => break,
            }
        }
        if history_mark.is_some() || state_mark.is_some() {
            return Handling::Later(Box::pin(self.route_then_ack(
                Vec::new(),
                [history_mark, state_mark],
                qos,
                pkid,
            )));
        }
        self.acknowledge(qos, pkid);
        Handling::Done(Flow::Continue)
    }

    /// Routes what is left (the router's queue was full: waits for room, which is TCP
    /// back-pressure on this client), then, with a history mark, waits until the fix's rows
    /// are in PostgreSQL (bounded by `history::ACK_WAIT`), and with a state mark until its
    /// tracker is in Redis (bounded by `persist::WRITE_WAIT`), then acknowledges.
    async fn route_then_ack(
        &mut self,
        rest: Vec<RouterMsg>,
        [history_mark, state_mark]: [Option<u64>; 2],
        qos: QoS,
        pkid: u16,
    ) -> Flow {
        for msg in rest {
            self.router(msg).await;
        }
        if let (Some(mark), Some(history)) = (history_mark, self.ctx.history.get()) {
            let history = history.clone();
            Box::pin(history.written(mark)).await;
        }
        if let (Some(mark), Some(store)) = (state_mark, self.ctx.persist.get()) {
            let store = store.clone();
            Box::pin(store.written(mark)).await;
        }
        self.acknowledge(qos, pkid);
        Flow::Continue
    }

    /// Routes the ingest hook's outputs (processed state, events), before the message they
    /// came from, waiting for room in the router's queue.
    async fn route_outputs(&mut self, outputs: Vec<Arc<Message>>) {
        for message in outputs {
            self.router(RouterMsg::Publish {
                message,
                qos2_pkid: None,
            })
            .await;
        }
    }

    /// With `--cluster` and durable sessions known: the message goes to the router with a
    /// reply that comes once its copies for durable subscribers are in Redis (at most
    /// `persist::WRITE_WAIT`); only then is it acknowledged. Not stored in time: v5 PUBACK /
    /// PUBREC 0x80 with the reason, a 3.1.1 client is disconnected without an ack; either way
    /// the client sends it again (README "Running a cluster").
    async fn publish_persisted(
        &mut self,
        outputs: Vec<Arc<Message>>,
        message: Arc<Message>,
        marks: [Option<u64>; 2],
        qos: QoS,
        pkid: u16,
    ) -> Flow {
        self.route_outputs(outputs).await;
        let (reply, stored) = tokio::sync::oneshot::channel();
        let qos2_pkid = (qos == QoS::ExactlyOnce).then_some((self.session, pkid));
        self.router(RouterMsg::PublishPersisted {
            message,
            qos2_pkid,
            reply,
        })
        .await;
        let stored = tokio::time::timeout(crate::persist::WRITE_WAIT, stored).await;
        if matches!(stored, Ok(Ok(true))) {
            return self.route_then_ack(Vec::new(), marks, qos, pkid).await;
        }
        if qos == QoS::ExactlyOnce {
            // The router forgets the packet id, so that the client's resend is routed.
            self.release(pkid);
            self.router(RouterMsg::PubRel {
                session: self.session,
                pkid,
                known: None,
            })
            .await;
        }
        const WHY: &str = "not stored for the cluster's persistent sessions (Redis unavailable)";
        match self.protocol {
            Protocol::V5 => {
                self.refuse_publish(qos, pkid, reason::UNSPECIFIED_ERROR, WHY);
                Flow::Continue
            }
            _ => violation(reason::UNSPECIFIED_ERROR, WHY),
        }
    }

    /// Persisted before anyone (hub, subscribers) is notified; the PUBACK waits for it too:
    /// fsynced to the local SOS log, and while Redis is up acknowledged by Redis (at most 2 s,
    /// then the SOS is delivered anyway; the log has it).
    async fn publish_sos(
        &mut self,
        vehicle: Box<str>,
        message: Arc<Message>,
        qos: QoS,
        pkid: u16,
    ) -> Flow {
        let ts = crate::ingest::now_ms();
        let logged = match self.ctx.sos_log.get() {
            Some(log) => match log.append(&vehicle, ts, &message.payload).await {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::error!(vehicle = %vehicle, error = %e, "SOS not written to the local log");
                    None
                }
            },
            None => None,
        };
        if let Some(store) = self.ctx.persist.get() {
            let is_logged = logged.is_some();
            let record = logged.unwrap_or_else(|| {
                crate::sos_log::LoggedSos::unlogged(&vehicle, ts, &message.payload)
            });
            Box::pin(store.sos(&record, is_logged)).await;
        }
        let event = self.ctx.ingest.sos(&vehicle, &message.payload);
        self.router(RouterMsg::Publish {
            message: event,
            qos2_pkid: None,
        })
        .await;
        let qos2_pkid = (qos == QoS::ExactlyOnce).then_some((self.session, pkid));
        self.router(RouterMsg::Publish { message, qos2_pkid }).await;
        self.acknowledge(qos, pkid);
        Flow::Continue
    }

    /// A retained publish that may cross `--max-retained(-bytes)`: the router decides; a new
    /// topic past the limit gets PUBACK 0x97 (v5) and is neither stored nor delivered.
    async fn publish_retained(
        &mut self,
        outputs: Vec<Arc<Message>>,
        message: Arc<Message>,
        qos: QoS,
        pkid: u16,
    ) -> Flow {
        self.route_outputs(outputs).await;
        let (reply, admitted) = tokio::sync::oneshot::channel();
        let qos2_pkid = (qos == QoS::ExactlyOnce).then_some((self.session, pkid));
        self.router(RouterMsg::PublishRetained {
            message,
            qos2_pkid,
            reply,
        })
        .await;
        if admitted.await.unwrap_or(true) {
            self.acknowledge(qos, pkid);
        } else {
            self.release(pkid);
            self.refuse_publish(
                qos,
                pkid,
                reason::QUOTA_EXCEEDED,
                "retained message limit reached (--max-retained, --max-retained-bytes)",
            );
        }
        Flow::Continue
    }

    fn acknowledge(&mut self, qos: QoS, pkid: u16) {
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack(Ack::Received(pkid)),
            QoS::ExactlyOnce => self.ack(Ack::Recorded(pkid)),
        }
    }

    /// Everything about a publish that needs no waiting: checks, the message, the ingest
    /// hook. `Err` is the flow when the publish ends here (refused or a violation).
    fn accept(&mut self, mut p: Publish) -> Result<Accepted, Flow> {
        let received = Instant::now();
        self.ctx.metrics.messages_received.fetch_add(1, Relaxed);
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.ctx.limits.topic_alias_maximum {
                return Err(violation(
                    reason::TOPIC_ALIAS_INVALID,
                    "topic alias out of range",
                ));
            }
            if p.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.get(&alias)) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(violation(reason::PROTOCOL_ERROR, "unknown topic alias"));
                    }
                }
            } else {
                self.aliases
                    .get_or_insert_default()
                    .insert(alias, p.topic.clone());
            }
        }
        if let Err(e) = topic::validate_name(&p.topic) {
            return Err(violation(reason::TOPIC_NAME_INVALID, e.as_str()));
        }
        if p.qos == QoS::ExactlyOnce {
            let unreleased = self.unreleased.get_or_insert_default();
            if !unreleased.contains(&p.pkid) {
                if unreleased.len() >= usize::from(self.ctx.limits.receive_maximum) {
                    return Err(violation(
                        reason::RECEIVE_MAXIMUM_EXCEEDED,
                        "more QoS 2 publishes unreleased than our receive maximum",
                    ));
                }
                unreleased.insert(p.pkid);
            }
        }
        let (qos, pkid) = (p.qos, p.pkid);
        if !self.may_publish(&p.topic) {
            self.ctx.metrics.publishes_denied.fetch_add(1, Relaxed);
            self.release(pkid);
            self.refuse_publish(
                qos,
                pkid,
                reason::NOT_AUTHORIZED,
                "not authorized to publish to this topic",
            );
            return Err(Flow::Continue);
        }
        p.properties.subscription_identifiers.clear();
        let expires_at = p
            .properties
            .message_expiry_interval
            .take()
            .map(|s| Instant::now() + Duration::from_secs(s.into()));
        let mut accepted = Accepted {
            outputs: Vec::new(),
            message: None,
            sos: None,
            history_mark: None,
            state_mark: None,
            qos,
            pkid,
        };
        let mut route = true;
        // The ingest hook reads the topic and payload where they were decoded; the message is
        // made (copied out of the read buffer) only when it is routed.
        match driver_topic(&p.topic) {
            Some(DriverTopic::Location(vehicle)) => {
                match self
                    .ctx
                    .ingest
                    .location(vehicle, &p.payload, received, Source::Mqtt)
                {
                    Ok(outputs) => {
                        let vehicles = self.vehicles.get_or_insert_default();
                        // Looked up before inserting: a driver repeats its vehicle on every
                        // update, and `insert` would allocate the key each time.
                        if vehicles.len() < MAX_VEHICLES_PER_CONNECTION
                            && !vehicles.contains(vehicle)
                        {
                            vehicles.insert(vehicle.into());
                        }
                        if qos != QoS::AtMostOnce && !outputs.is_empty() {
                            accepted.history_mark = self.ctx.history.get().and_then(|h| h.mark());
                            accepted.state_mark = self
                                .ctx
                                .leases
                                .get()
                                .and(self.ctx.persist.get())
                                .and_then(|s| s.mark());
                        }
                        accepted.outputs = outputs;
                        // QoS 2 is always routed: the router keeps its duplicate detection.
                        route = p.retain
                            || qos == QoS::ExactlyOnce
                            || self.ctx.metrics.location_subscriptions.load(SeqCst) > 0;
                    }
                    Err(LocationError::Invalid(r)) => {
                        self.release(pkid);
                        let text = format!("{}: {}", r.field, r.message);
                        self.refuse_publish(qos, pkid, reason::PAYLOAD_FORMAT_INVALID, &text);
                        return Err(Flow::Continue);
                    }
                    Err(LocationError::VehicleQuota) => {
                        self.release(pkid);
                        let text = "vehicle limit reached (--max-vehicles)";
                        self.refuse_publish(qos, pkid, reason::QUOTA_EXCEEDED, text);
                        return Err(Flow::Continue);
                    }
                }
            }
            Some(DriverTopic::Sos(vehicle)) => accepted.sos = Some(vehicle.into()),
            None => {}
        }
        if route {
            accepted.message = Some(Arc::new(Message {
                topic: own_topic(p.topic),
                payload: own_payload(p.payload),
                qos,
                retain: p.retain,
                properties: crate::message::shared_properties(p.properties),
                expires_at,
                origin: Origin::Session(self.session),
            }));
        }
        Ok(accepted)
    }
}

fn own_topic(topic: ByteString) -> ByteString {
    ByteString::from(&*topic)
}

fn own_payload(payload: Bytes) -> Bytes {
    if payload.len() < COPY_PAYLOAD_BELOW {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}
