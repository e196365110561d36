//! The router: the single owner of sessions, subscriptions and retained messages.
//!
//! Connections talk to it through one bounded channel of [`RouterMsg`]; it answers through
//! each connection's [`ConnLink`] without ever waiting on a client: when a link's queue is
//! full the session is marked blocked and resumes when the connection reports `Ready`. Timers
//! (session expiry, delayed wills, `$SYS`) run off a one-second tick.
//!
//! # Layout
//! - `session`: one session's queue, in-flight window and flushing.
//! - `delivery`: one message to one session, its wire properties and exact encoded size.
//! - `reader`: the per-message read check (ACL) of a restricted session, cached per topic.
//! - `subscriptions`: the subscription tree with shared groups.
//! - `retained`: retained messages by topic level.
//! - `sys`: the `$SYS/broker/...` statistics.
//! - `id_map`: maps keyed by session id.

pub mod delivery;
pub(crate) mod id_map;
pub mod reader;
pub mod retained;
pub mod session;
pub mod subscriptions;
mod sys;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use fleetmq_codec::{ByteString, Bytes, Properties, QoS, reason};
use tokio::sync::{mpsc, oneshot};

use crate::auth::ReadRights;
use crate::connection::link::ConnLink;
use crate::message::{Message, Origin};
use crate::metrics::Metrics;
use crate::topic;
use id_map::IdMap;
use session::{Delivery, Session};
use subscriptions::{SubOptions, SubscriptionTree, Target};

/// Messages a router accepts; the channel holding them is bounded, so a publisher that outruns
/// the router waits (TCP back-pressure) instead of growing memory.
pub const ROUTER_CAPACITY: usize = 8192;

/// A will message, published when its connection ends abnormally.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub delay: u32,
    pub expiry: Option<u32>,
}

/// CONNECT, as the router needs it.
#[derive(Debug)]
pub struct ConnectRequest {
    pub client_id: Arc<str>,
    pub clean_start: bool,
    pub expiry_interval: u32,
    pub will: Option<Will>,
    pub link: ConnLink,
    pub receive_maximum: u16,
    pub max_packet_size: usize,
    /// The client accepts topic aliases from us (v5 Topic Alias Maximum > 0).
    pub aliases: bool,
    /// What the client may read, `None` when it may read every topic.
    pub reader: Option<ReadRights>,
    pub reply: oneshot::Sender<ConnectReply>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectReply {
    pub session: u64,
    pub session_present: bool,
    /// Refused: a new session past `--max-sessions` (CONNACK 0x97); no session was made.
    pub quota_exceeded: bool,
}

/// One filter of a SUBSCRIBE. `denied` carries the failure code when the connection already
/// refused it (ACL, invalid filter).
#[derive(Debug, Clone)]
pub struct SubRequest {
    pub filter: ByteString,
    pub opts: SubOptions,
    pub retain_handling: u8,
    pub denied: Option<u8>,
}

#[derive(Debug)]
pub enum RouterMsg {
    Connect(Box<ConnectRequest>),
    /// The connection wrote CONNACK (or SUBACK, or drained its link): send what is queued.
    Ready {
        session: u64,
        conn: u64,
    },
    Publish {
        message: Arc<Message>,
        qos2_pkid: Option<(u64, u16)>,
    },
    /// A client's retained publish near the retained limits: routed only when the store admits
    /// it; the reply says whether it did (else the client gets PUBACK 0x97).
    PublishRetained {
        message: Arc<Message>,
        qos2_pkid: Option<(u64, u16)>,
        reply: oneshot::Sender<bool>,
    },
    /// Replies with one SUBACK code per filter and whether each subscription is new.
    Subscribe {
        session: u64,
        requests: Vec<SubRequest>,
        reply: oneshot::Sender<(Vec<u8>, Vec<bool>)>,
    },
    /// After SUBACK is written: deliver the retained messages the new subscriptions asked for.
    SendRetained {
        session: u64,
        requests: Vec<SubRequest>,
        new: Vec<bool>,
    },
    Unsubscribe {
        session: u64,
        filters: Vec<ByteString>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// PUBACK or PUBCOMP from the client.
    Complete {
        session: u64,
        pkid: u16,
    },
    /// PUBREC from the client.
    Received {
        session: u64,
        pkid: u16,
    },
    /// PUBREL from the client for one of its QoS 2 publishes. With `known`, the router says
    /// whether the session was holding that packet id (a PUBREL the connection did not expect,
    /// e.g. after a reconnect): the connection answers PUBCOMP 0x92 when it was not.
    Release {
        session: u64,
        pkid: u16,
        known: Option<oneshot::Sender<bool>>,
    },
    Disconnect {
        session: u64,
        conn: u64,
        publish_will: bool,
        expiry_interval: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RouterStats {
    pub sessions: usize,
    pub connected: usize,
    pub subscriptions: usize,
    pub retained: usize,
}

/// Limits the router enforces.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Messages per session queue (`--max-queued`).
    pub max_queued: usize,
    /// Bytes per session queue.
    pub max_queued_bytes: usize,
    /// Sessions, live and offline (`--max-sessions`): a new one past it is refused.
    pub max_sessions: usize,
    /// Retained topics and their bytes (`--max-retained`, `--max-retained-bytes`).
    pub max_retained: usize,
    pub max_retained_bytes: usize,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            max_queued: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_sessions: usize::MAX,
            max_retained: usize::MAX,
            max_retained_bytes: usize::MAX,
        }
    }
}

struct PendingWill {
    at: Instant,
    will: Will,
    client_id: Arc<str>,
}

/// Distinct filters one session may hold. Each costs the subscription tree and the session
/// some memory, so a client must not be able to add them without end; past this a new filter
/// gets SUBACK 0x97 (quota exceeded; 0x80 in 3.1.1). Generous for real clients, which follow
/// fleets with wildcards.
pub const MAX_FILTERS_PER_SESSION: usize = 10_000;

pub struct Router {
    rx: mpsc::Receiver<RouterMsg>,
    /// Connections that drained a full link: served before any publish, so a blocked session
    /// resumes at once instead of waiting behind a full router queue of publishes. Unbounded
    /// but bounded by construction: a connection sends one `Ready` per time the router blocked
    /// its session, and the router blocks it again only after reading that `Ready`.
    ready_rx: mpsc::UnboundedReceiver<(u64, u64)>,
    ready_tx: mpsc::UnboundedSender<(u64, u64)>,
    /// Boxed: a map slot per session stays two words, not the whole session, so the
    /// table's spare capacity costs little with tens of thousands of idle clients.
    sessions: IdMap<Box<Session>>,
    by_client: HashMap<Arc<str>, u64>,
    next_session: u64,
    subs: SubscriptionTree,
    retained: retained::RetainedStore,
    /// Wills of sessions still connected, by session.
    wills: IdMap<Will>,
    delayed_wills: Vec<PendingWill>,
    config: RouterConfig,
    metrics: Arc<Metrics>,
    scratch: Vec<(u64, SubOptions)>,
}

impl Router {
    pub fn new(config: RouterConfig, metrics: Arc<Metrics>) -> (Router, mpsc::Sender<RouterMsg>) {
        let (tx, rx) = mpsc::channel(ROUTER_CAPACITY);
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let router = Router {
            rx,
            ready_rx,
            ready_tx,
            sessions: IdMap::default(),
            by_client: HashMap::new(),
            next_session: 1,
            subs: SubscriptionTree::counting_locations_in(metrics.location_subscriptions.clone()),
            retained: retained::RetainedStore::default(),
            wills: IdMap::default(),
            delayed_wills: Vec::new(),
            config,
            metrics,
            scratch: Vec::new(),
        };
        (router, tx)
    }

    /// Where connections report that their link has room again: `(session, connection)`.
    pub fn ready_sender(&self) -> mpsc::UnboundedSender<(u64, u64)> {
        self.ready_tx.clone()
    }

    /// Runs until `shutdown` completes (then tells every v5 client the server is shutting down)
    /// or every sender is gone.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sys = sys::Sys::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                Some((session, conn)) = self.ready_rx.recv() => self.ready(session, conn),
                msg = self.rx.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.expire(now);
                    for m in sys.due(now, &self.metrics, self.stats()) {
                        self.route(m);
                    }
                }
                _ = &mut shutdown => {
                    for s in self.sessions.values() {
                        if let Some(link) = &s.link {
                            link.disconnect(reason::SERVER_SHUTTING_DOWN, Some("server shutting down"));
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Whether a retained `message` may be stored: always the broker's own, a client's within
    /// `--max-retained` / `--max-retained-bytes`.
    fn admits_retained(&self, message: &Message) -> bool {
        message.origin == Origin::Broker
            || self.retained.admits(
                message,
                self.config.max_retained,
                self.config.max_retained_bytes,
            )
    }

    fn stats(&self) -> RouterStats {
        RouterStats {
            sessions: self.sessions.len(),
            connected: self.sessions.values().filter(|s| s.is_connected()).count(),
            subscriptions: self.subs.len(),
            retained: self.retained.len(),
        }
    }

    fn handle(&mut self, msg: RouterMsg) {
        match msg {
            RouterMsg::Connect(req) => self.connect(*req),
            RouterMsg::Ready { session, conn } => self.ready(session, conn),
            RouterMsg::Publish { message, qos2_pkid } => {
                if let Some((session, pkid)) = qos2_pkid {
                    // A resent QoS 2 publish already routed: don't deliver it twice.
                    if let Some(s) = self.sessions.get_mut(&session)
                        && !s.incoming_qos2.get_or_insert_default().insert(pkid)
                    {
                        return;
                    }
                }
                self.route(message);
            }
            RouterMsg::PublishRetained {
                message,
                qos2_pkid,
                reply,
            } => {
                let admitted = self.admits_retained(&message);
                if !admitted {
                    self.metrics.retained_refused.fetch_add(1, Relaxed);
                }
                let _ = reply.send(admitted);
                if admitted {
                    self.handle(RouterMsg::Publish { message, qos2_pkid });
                }
            }
            RouterMsg::Subscribe {
                session,
                requests,
                reply,
            } => {
                let _ = reply.send(self.subscribe(session, &requests));
            }
            RouterMsg::SendRetained {
                session,
                requests,
                new,
            } => self.send_retained(session, &requests, &new),
            RouterMsg::Unsubscribe {
                session,
                filters,
                reply,
            } => {
                let codes = self.unsubscribe(session, &filters);
                let _ = reply.send(codes);
            }
            RouterMsg::Complete { session, pkid } => {
                if let Some(s) = self.sessions.get_mut(&session)
                    && s.complete(pkid)
                {
                    s.flush(Instant::now(), &self.metrics);
                }
            }
            RouterMsg::Received { session, pkid } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.released(pkid);
                }
            }
            RouterMsg::Release {
                session,
                pkid,
                known,
            } => {
                let held = self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.incoming_qos2.as_mut())
                    .is_some_and(|pending| pending.remove(&pkid));
                if let Some(reply) = known {
                    let _ = reply.send(held);
                }
            }
            RouterMsg::Disconnect {
                session,
                conn,
                publish_will,
                expiry_interval,
            } => self.disconnect(session, conn, publish_will, expiry_interval),
        }
    }

    fn ready(&mut self, session: u64, conn: u64) {
        if let Some(s) = self.sessions.get_mut(&session)
            && s.link.as_ref().is_some_and(|l| l.id == conn)
        {
            s.blocked = false;
            s.flush(Instant::now(), &self.metrics);
        }
    }

    fn connect(&mut self, req: ConnectRequest) {
        let now = Instant::now();
        let existing = self.by_client.get(&req.client_id).copied();
        // A pending delayed will of this client is cancelled by its reconnect.
        self.delayed_wills.retain(|w| w.client_id != req.client_id);
        let mut session_present = false;
        let id = match existing {
            Some(id) => {
                if let Some(s) = self.sessions.get_mut(&id)
                    && let Some(old) = s.link.take()
                {
                    old.disconnect(
                        reason::SESSION_TAKEN_OVER,
                        Some("another connection took over this session"),
                    );
                }
                // The old connection ended without DISCONNECT: its will goes out now unless
                // it asked for a delay, which the new connection cancels (MQTT 5 §3.1.2.5).
                if let Some(will) = self.wills.remove(&id)
                    && will.delay == 0
                {
                    self.publish_will(will);
                }
                if req.clean_start {
                    self.end_session(id);
                    None
                } else {
                    session_present = true;
                    Some(id)
                }
            }
            None => None,
        };
        if id.is_none() && self.sessions.len() >= self.config.max_sessions {
            self.metrics.sessions_refused.fetch_add(1, Relaxed);
            let _ = req.reply.send(ConnectReply {
                session: 0,
                session_present: false,
                quota_exceeded: true,
            });
            return;
        }
        let id = id.unwrap_or_else(|| {
            let id = self.next_session;
            self.next_session += 1;
            self.sessions
                .insert(id, Box::new(Session::new(req.client_id.clone())));
            self.by_client.insert(req.client_id.clone(), id);
            id
        });
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.expiry_interval = req.expiry_interval;
        s.expires_at = None;
        s.receive_maximum = req.receive_maximum.max(1);
        s.max_packet_size = req.max_packet_size;
        s.aliases = req.aliases;
        s.reader = req.reader.map(|r| Box::new(reader::Reader::new(r)));
        s.link = Some(req.link);
        // Nothing is sent until the connection has written CONNACK and says Ready.
        s.blocked = true;
        s.mark_inflight_unsent();
        // Messages that expired while offline are dropped on flush.
        let _ = now;
        if let Some(w) = req.will {
            self.wills.insert(id, w);
        }
        self.metrics
            .sessions
            .store(self.sessions.len() as i64, Relaxed);
        let _ = req.reply.send(ConnectReply {
            session: id,
            session_present,
            quota_exceeded: false,
        });
    }

    fn disconnect(&mut self, session: u64, conn: u64, publish_will: bool, expiry: Option<u32>) {
        let now = Instant::now();
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.link.as_ref().is_none_or(|l| l.id != conn) {
            return; // an old connection of a session taken over
        }
        s.link = None;
        s.blocked = false;
        if let Some(e) = expiry {
            s.expiry_interval = e;
        }
        let expiry_interval = s.expiry_interval;
        let client_id = s.client_id.clone();
        let will = self.wills.remove(&session);
        if let Some(will) = will.filter(|_| publish_will) {
            let delay = will.delay.min(expiry_interval);
            if delay == 0 {
                self.publish_will(will);
            } else {
                self.delayed_wills.push(PendingWill {
                    at: now + Duration::from_secs(delay.into()),
                    will,
                    client_id,
                });
            }
        }
        if expiry_interval == 0 {
            self.end_session(session);
        } else if expiry_interval != u32::MAX
            && let Some(s) = self.sessions.get_mut(&session)
        {
            s.expires_at = Some(now + Duration::from_secs(expiry_interval.into()));
        }
    }

    fn publish_will(&mut self, will: Will) {
        let message = Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: crate::message::shared_properties(will.properties),
            expires_at: will
                .expiry
                .map(|e| Instant::now() + Duration::from_secs(e.into())),
            origin: Origin::Broker,
        });
        self.route(message);
    }

    fn end_session(&mut self, id: u64) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        if self.by_client.get(&s.client_id) == Some(&id) {
            self.by_client.remove(&s.client_id);
        }
        for f in s.filters.iter().flat_map(|f| f.iter()) {
            if let Ok((group, filter)) = topic::parse_shared(f) {
                self.subs.unsubscribe(id, group, filter);
            }
        }
        self.wills.remove(&id);
        self.metrics
            .sessions
            .store(self.sessions.len() as i64, Relaxed);
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, Relaxed);
    }

    /// Session expiry and delayed wills.
    fn expire(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.link.is_none() && s.expires_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.end_session(id);
        }
        if self.delayed_wills.iter().any(|w| w.at <= now) {
            let (fire, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed_wills)
                .into_iter()
                .partition(|w| w.at <= now);
            self.delayed_wills = keep;
            for w in fire {
                self.publish_will(w.will);
            }
        }
    }

    fn subscribe(&mut self, session: u64, requests: &[SubRequest]) -> (Vec<u8>, Vec<bool>) {
        let mut codes = Vec::with_capacity(requests.len());
        let mut new = Vec::with_capacity(requests.len());
        for r in requests {
            new.push(false);
            if let Some(code) = r.denied {
                codes.push(code);
                continue;
            }
            let Ok((group, filter)) = topic::parse_shared(&r.filter) else {
                codes.push(reason::TOPIC_FILTER_INVALID);
                continue;
            };
            let Some(s) = self.sessions.get_mut(&session) else {
                codes.push(reason::UNSPECIFIED_ERROR);
                continue;
            };
            let held = s.filters.as_deref();
            if held.is_some_and(|f| f.len() >= MAX_FILTERS_PER_SESSION && !f.contains(&*r.filter)) {
                codes.push(reason::QUOTA_EXCEEDED);
                continue;
            }
            if let Some(n) = new.last_mut() {
                *n = self.subs.subscribe(session, group, filter, r.opts);
            }
            s.filters
                .get_or_insert_default()
                .insert(Box::from(&*r.filter));
            codes.push(r.opts.qos as u8);
        }
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, Relaxed);
        (codes, new)
    }

    fn send_retained(&mut self, session: u64, requests: &[SubRequest], new: &[bool]) {
        let now = Instant::now();
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        for (i, r) in requests.iter().enumerate() {
            let is_new = new.get(i).copied().unwrap_or(true);
            if r.denied.is_some() || r.retain_handling == 2 || (r.retain_handling == 1 && !is_new) {
                continue;
            }
            let Ok((None, filter)) = topic::parse_shared(&r.filter) else {
                continue;
            };
            for m in self.retained.matching(filter) {
                if m.is_expired(now) || s.reader.as_mut().is_some_and(|r| !r.may_read(&m.topic)) {
                    continue;
                }
                let qos = m.qos.min(r.opts.qos);
                let sub_ids = r.opts.id.into_iter().collect();
                s.replay(
                    Delivery {
                        message: m,
                        qos,
                        retain: true,
                        sub_ids,
                    },
                    &self.metrics,
                );
            }
        }
        s.flush(now, &self.metrics);
    }

    fn unsubscribe(&mut self, session: u64, filters: &[ByteString]) -> Vec<u8> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return vec![reason::UNSPECIFIED_ERROR; filters.len()];
        };
        let codes = filters
            .iter()
            .map(|f| {
                let removed = s.filters.as_mut().is_some_and(|fs| fs.remove(&**f))
                    && topic::parse_shared(f)
                        .is_ok_and(|(g, inner)| self.subs.unsubscribe(session, g, inner));
                if removed {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, Relaxed);
        codes
    }

    /// Delivers a message to every matching subscription: one copy per session, with the
    /// highest matching QoS and every matching subscription identifier.
    fn route(&mut self, message: Arc<Message>) {
        if message.retain {
            // A client's publish that raced past the connection's check is delivered but not
            // retained; the broker's own `vehicles/{id}` are bounded by --max-vehicles instead.
            if self.admits_retained(&message) {
                self.retained.set(message.clone());
            } else {
                self.metrics.retained_refused.fetch_add(1, Relaxed);
            }
            self.metrics
                .retained
                .store(self.retained.len() as i64, Relaxed);
            self.metrics
                .retained_bytes
                .store(self.retained.bytes() as i64, Relaxed);
        }
        let now = Instant::now();
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        let sessions = &self.sessions;
        let topic = &message.topic;
        // A shared message goes to a member that may read it, a connected one if any.
        let readable = |id: u64| {
            sessions
                .get(&id)
                .is_some_and(|s| s.reader.as_ref().is_none_or(|r| r.may_read_uncached(topic)))
        };
        self.subs.for_each_match(topic, |t| match t {
            Target::Direct(s, o) => targets.push((s, o)),
            Target::Shared(g) => {
                let connected =
                    |id| readable(id) && sessions.get(&id).is_some_and(|s| s.is_connected());
                if let Some(p) = g.pick(connected, readable) {
                    targets.push(p);
                }
            }
        });
        targets.sort_unstable_by_key(|(s, _)| *s);
        let mut i = 0;
        while i < targets.len() {
            let sid = targets[i].0;
            let mut qos = QoS::AtMostOnce;
            let mut retain = false;
            let mut sub_ids = Vec::new();
            let mut any = false;
            while i < targets.len() && targets[i].0 == sid {
                let o = targets[i].1;
                i += 1;
                if o.no_local && message.origin == Origin::Session(sid) {
                    continue;
                }
                any = true;
                qos = qos.max(o.qos.min(message.qos));
                retain |= o.retain_as_published && message.retain;
                sub_ids.extend(o.id);
            }
            if !any {
                continue;
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                // docs/security.md: every message is checked against the reader's rights; the
                // decision is cached per topic, so `#` under a long ACL stays fast.
                if s.reader
                    .as_mut()
                    .is_some_and(|r| !r.may_read(&message.topic))
                {
                    continue;
                }
                s.offer(
                    Delivery {
                        message: message.clone(),
                        qos,
                        retain,
                        sub_ids,
                    },
                    (self.config.max_queued, self.config.max_queued_bytes),
                    now,
                    &self.metrics,
                );
            }
        }
        self.scratch = targets;
    }
}
