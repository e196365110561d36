//! The router: the single owner of sessions, subscriptions and retained messages.
//!
//! Connections talk to it through one bounded channel of [`RouterMsg`]; it answers through
//! each connection's [`ConnLink`](crate::link::ConnLink) without ever waiting on a client:
//! when a link's queue is full the session is marked blocked and resumes when the connection
//! reports `Ready`. Timers (session expiry, delayed wills, `$SYS`) run off a one-second tick.
//! Both directions of that contract live in `crate::link`; the router imports nothing of
//! `connection`.
//!
//! This file is the event loop and its dispatch; each kind of work has a file of its own, and
//! routing to other nodes sits beside local routing behind [`remote::Remote`].
//!
//! # Layout
//! - `local`: delivering one message to this node's matching sessions (and the retained store).
//! - `remote`: the seam for cross-node routing, a no-op on a single node.
//! - `durable`: the seam to the store of durable sessions (`--cluster`), and `stored`, the
//!   router's side of it (parked CONNECTs, queued messages coming back, records).
//! - `lifecycle`: CONNECT, DISCONNECT, wills, session expiry.
//! - `subscribe`: SUBSCRIBE, UNSUBSCRIBE and the retained messages a subscription asks for.
//! - `session`: one session's queue, in-flight window and flushing.
//! - `reader`: the per-message read check (ACL) of a restricted session, cached per topic.
//! - `subscriptions`: the subscription tree with shared groups.
//! - `retained`: retained messages by topic level.
//! - `sys`: the `$SYS/broker/...` statistics.
//! - `id_map`: maps keyed by session id.

pub mod durable;
pub(crate) mod id_map;
mod lifecycle;
mod local;
pub mod reader;
pub mod remote;
pub mod retained;
pub mod session;
mod stored;
mod subscribe;
pub mod subscriptions;
mod sys;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use fleetmq_codec::reason;
use tokio::sync::mpsc;

// The senders of router messages outside `connection` (ingest, persist, HTTP, the server)
// name it from here, the router being where it goes.
pub use crate::link::RouterMsg;
use crate::link::{ConnId, ConnectRequest, SessionId, SubOptions, Will};
use crate::message::{Message, Origin};
use crate::metrics::Metrics;
use id_map::IdMap;
use lifecycle::PendingWill;
use remote::Remote;
use session::Session;
use subscriptions::SubscriptionTree;

/// Messages a router accepts; the channel holding them is bounded, so a publisher that outruns
/// the router waits (TCP back-pressure) instead of growing memory.
pub const ROUTER_CAPACITY: usize = 8192;

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

pub struct Router {
    rx: mpsc::Receiver<RouterMsg>,
    /// Connections that drained a full link: served before any publish, so a blocked session
    /// resumes at once instead of waiting behind a full router queue of publishes. Unbounded
    /// but bounded by construction: a connection sends one `Ready` per time the router blocked
    /// its session, and the router blocks it again only after reading that `Ready`.
    ready_rx: mpsc::UnboundedReceiver<(SessionId, ConnId)>,
    ready_tx: mpsc::UnboundedSender<(SessionId, ConnId)>,
    /// Boxed: a map slot per session stays two words, not the whole session, so the
    /// table's spare capacity costs little with tens of thousands of idle clients.
    sessions: IdMap<Box<Session>>,
    by_client: HashMap<Arc<str>, SessionId>,
    next_session: u64,
    subs: SubscriptionTree,
    retained: retained::RetainedStore,
    /// Wills of sessions still connected, by session.
    wills: IdMap<Will>,
    delayed_wills: Vec<PendingWill>,
    config: RouterConfig,
    metrics: Arc<Metrics>,
    /// Matches of one message: session, options, whether through a shared group.
    scratch: Vec<(SessionId, SubOptions, bool)>,
    /// Other nodes: where this node's publishes go and theirs come from (`remote`).
    remote: Box<dyn Remote>,
    /// The store of durable sessions (`--cluster`), `None` on a single node.
    durable: Option<durable::Link>,
    /// CONNECTs waiting for the store to open their session, by client id (one each: a
    /// newer CONNECT replaces an older one, whose connection is refused). Bounded by the
    /// connections, each of which sends one CONNECT.
    parked: HashMap<Arc<str>, ConnectRequest>,
    /// Client messages taken from `rx` in one go (at most [`BATCH`]), kept for its capacity.
    batch: Vec<RouterMsg>,
}

/// Client messages handled per pass of the event loop: the other sources (`Ready`, the store,
/// the tick) are looked at between two passes.
const BATCH: usize = 256;

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
            remote: Box::new(remote::SingleNode),
            durable: None,
            parked: HashMap::new(),
            batch: Vec::new(),
        };
        (router, tx)
    }

    /// Routes to and from other nodes through `remote` from now on (`--cluster`); set before
    /// [`Router::run`].
    pub fn set_remote(&mut self, remote: Box<dyn Remote>) {
        self.remote = remote;
        // Now, not in `run`: there a client's SUBSCRIBE (served first) could come before them.
        for incoming in self.remote.preloaded() {
            self.incoming(incoming);
        }
    }

    /// Keeps durable sessions in `link`'s store from now on (`--cluster`); set before
    /// [`Router::run`].
    pub fn set_durable(&mut self, link: durable::Link) {
        self.durable = Some(link);
    }

    /// Where connections report that their link has room again: `(session, connection)`.
    pub fn ready_sender(&self) -> mpsc::UnboundedSender<(SessionId, ConnId)> {
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
                // Before client messages: the store's answers (opened sessions, queued
                // messages) only follow ops the router gave it, so they cannot starve the
                // clients, and a flood must not starve them (the store would stall behind
                // them). Never ready without a store of durable sessions.
                Some(event) = std::future::poll_fn(|cx| match &mut self.durable {
                    Some(d) => d.events.poll_recv(cx),
                    None => std::task::Poll::Pending,
                }) => self.stored(event),
                // Everything waiting at once: one pass of the loop per batch, not per message.
                n = self.rx.recv_many(&mut self.batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let mut batch = std::mem::take(&mut self.batch);
                    for m in batch.drain(..) {
                        self.handle(m);
                    }
                    self.batch = batch;
                }
                // Polled only when no local message waits; never ready on a single node.
                Some(incoming) = std::future::poll_fn(|cx| self.remote.poll_incoming(cx)) => {
                    self.incoming(incoming);
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.expire(now);
                    self.poll_queues();
                    // `$SYS` describes this node: never forwarded.
                    for m in sys.due(now, &self.metrics, self.stats()) {
                        self.route_local(&m);
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
            RouterMsg::ConnAckSent { session, conn } => self.ready(session, conn),
            RouterMsg::Publish { message, qos2_pkid } => {
                self.publish(message, qos2_pkid, None);
            }
            RouterMsg::PublishMany(messages) => {
                for message in messages {
                    self.publish(message, None, None);
                }
            }
            RouterMsg::PublishPersisted {
                message,
                qos2_pkid,
                reply,
            } => {
                let done: durable::Done = Box::new(move |ok| {
                    let _ = reply.send(ok);
                });
                self.publish(message, qos2_pkid, Some(done));
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
                let result = self.subscribe(session, &requests);
                // A durable session's SUBACK waits until its record holds the filters.
                self.save(
                    session,
                    Box::new(move |_| {
                        let _ = reply.send(result);
                    }),
                );
            }
            RouterMsg::SubAckSent {
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
                self.save(
                    session,
                    Box::new(move |_| {
                        let _ = reply.send(codes);
                    }),
                );
            }
            RouterMsg::PubAckOrComp { session, pkid } => {
                if let Some(s) = self.sessions.get_mut(&session)
                    && s.complete(pkid)
                {
                    s.flush(Instant::now(), &self.metrics);
                }
            }
            RouterMsg::PubRec { session, pkid } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.released(pkid);
                }
            }
            RouterMsg::PubRel {
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

    fn ready(&mut self, session: SessionId, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&session)
            && s.link.as_ref().is_some_and(|l| l.id == conn)
        {
            s.blocked = false;
            s.flush(Instant::now(), &self.metrics);
        }
    }

    /// A PUBLISH to route; `done` is told once its copies for durable sessions are stored.
    fn publish(
        &mut self,
        message: Arc<Message>,
        qos2_pkid: Option<(SessionId, u16)>,
        done: Option<durable::Done>,
    ) {
        if let Some((session, pkid)) = qos2_pkid {
            // A resent QoS 2 publish already routed: don't deliver it twice.
            if let Some(s) = self.sessions.get_mut(&session)
                && !s.incoming_qos2.get_or_insert_default().insert(pkid)
            {
                if let Some(done) = done {
                    done(true);
                }
                return;
            }
        }
        self.route_with(message, done);
    }

    /// A message published on this node (a client's, a will, the broker's own): queued for
    /// durable sessions, delivered to the local subscribers, then handed to the other nodes.
    fn route(&mut self, message: Arc<Message>) {
        self.route_with(message, None);
    }

    fn route_with(&mut self, message: Arc<Message>, done: Option<durable::Done>) {
        let durable = self.persist(&message, done);
        self.route_local_with(&message, local::Groups::All, &durable);
        self.remote.forward(&message, &durable);
    }

    /// What another node sent: delivered here only, never forwarded again.
    fn incoming(&mut self, incoming: remote::Incoming) {
        match incoming {
            remote::Incoming::Publish {
                message,
                shared,
                durable,
            } => {
                self.route_local_with(&message, local::Groups::Only(&shared), &durable);
            }
            remote::Incoming::Kick { client_id } => self.kicked(&client_id),
            remote::Incoming::Wake { client_ids } => self.wake(&client_ids),
        }
    }
}
