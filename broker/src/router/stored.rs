//! The router's side of durable sessions (`durable`, `--cluster` only): CONNECTs parked until
//! the store opened their session, a resumed session's subscriptions and queue taken back,
//! records saved, publishes queued for durable subscribers, and queued messages read back
//! into the sessions this node holds. Without a store every method here does nothing.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;

use super::Router;
use super::durable::{Done, EntryId, Event, Op, Record, Resumed, SessionStore, SubRecord, Target};
use super::session::Session;
use crate::link::{ConnectReply, ConnectRequest, Delivery, SessionId};
use crate::message::{Message, Origin};
use crate::topic;

/// What becomes of a durable session's stored copy when it ends on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// It ended (expired, or disconnected with expiry 0): deleted, if this node still holds it.
    Forget,
    /// It moved to another node: kept.
    Drop,
    /// The store was already told (a clean start replaced it).
    Silent,
}

impl Router {
    /// Parks a CONNECT whose session the store must open first (returns `None`), or gives it
    /// back to be attached now. Parked: a durable session (expiry > 0), and a clean start 0
    /// with no session here (it may be stored). A clean start with expiry 0 deletes what is
    /// stored without waiting.
    pub(super) fn park(&mut self, req: ConnectRequest) -> Option<ConnectRequest> {
        let Some(d) = &self.durable else {
            return Some(req);
        };
        let local = self.by_client.get(&req.client_id).copied();
        if req.clean_start && req.expiry_interval == 0 {
            let _ = d.ops.try_send(Op::Forget {
                client_id: req.client_id.clone(),
                mine_only: false,
            });
            return Some(req);
        }
        if req.expiry_interval == 0 && local.is_some() {
            return Some(req);
        }
        let subs = match local.and_then(|id| self.sessions.get(&id)) {
            Some(s) if !req.clean_start => sub_records(s),
            _ => Vec::new(),
        };
        let op = Op::Open {
            client_id: req.client_id.clone(),
            clean_start: req.clean_start,
            load: !req.clean_start && local.is_none(),
            record: Record {
                node: d.node.to_string(),
                expiry: req.expiry_interval,
                disconnected_at: None,
                subs,
            },
        };
        if d.ops.try_send(op).is_err() {
            refuse(req);
            return None;
        }
        // A newer CONNECT of the same client replaces a parked one (its reply is dropped:
        // that connection is refused).
        self.parked.insert(req.client_id.clone(), req);
        None
    }

    /// What the store says.
    pub(super) fn stored(&mut self, event: Event) {
        match event {
            Event::Opened { client_id, result } => {
                let Some(req) = self.parked.remove(&client_id) else {
                    return;
                };
                match result {
                    Ok(resumed) => self.connect_now(req, resumed),
                    Err(()) => refuse(req),
                }
            }
            Event::Entries { client_id, entries } => {
                let Some(id) = self.by_client.get(&client_id).copied() else {
                    return;
                };
                let limits = (self.config.max_queued, self.config.max_queued_bytes);
                let Some(s) = self.sessions.get_mut(&id) else {
                    return;
                };
                for e in entries {
                    let Some(store) = s.store.as_mut() else {
                        return;
                    };
                    if e.id <= store.last {
                        continue; // read twice (a wake and the poll)
                    }
                    store.last = e.id;
                    let mut d = e.delivery;
                    d.entry = Some(e.id);
                    // docs/security.md: every message is checked against the reader's rights.
                    if s.reader
                        .as_mut()
                        .is_some_and(|r| !r.may_read(&d.message.topic))
                    {
                        let _ = store.ops.try_send(Op::Acked {
                            client_id: client_id.clone(),
                            id: e.id,
                        });
                        continue;
                    }
                    s.enqueue(d, limits.0, limits.1, &self.metrics);
                }
                s.flush(Instant::now(), &self.metrics);
            }
            Event::Wake { client_ids } => self.wake(&client_ids),
            Event::Unstored { message, targets } => self.deliver_live(&message, targets),
        }
    }

    /// Queues `message` for durable sessions of this node it reached live (the publishing
    /// node did not queue it for them); delivered live when that cannot be done.
    pub(super) fn persist_here(&mut self, message: &Arc<Message>, targets: Vec<Target>) {
        let Some(d) = &self.durable else {
            return self.deliver_live(message, targets);
        };
        let op = Op::Persist {
            message: message.clone(),
            targets,
            done: None,
            live_on_failure: true,
        };
        if let Err(
            TrySendError::Full(Op::Persist { targets, .. })
            | TrySendError::Closed(Op::Persist { targets, .. }),
        ) = d.ops.try_send(op)
        {
            self.deliver_live(message, targets);
        }
    }

    /// Delivers `message` to these sessions of this node as the live path does.
    fn deliver_live(&mut self, message: &Arc<Message>, targets: Vec<Target>) {
        let limits = (self.config.max_queued, self.config.max_queued_bytes);
        let now = Instant::now();
        for t in targets {
            let Some(s) = self
                .by_client
                .get(&t.client_id)
                .and_then(|id| self.sessions.get_mut(id))
            else {
                continue;
            };
            if s.reader
                .as_mut()
                .is_some_and(|r| !r.may_read(&message.topic))
            {
                continue;
            }
            let d = Delivery {
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                sub_ids: t.sub_ids,
                entry: None,
            };
            s.offer(d, limits, now, &self.metrics);
        }
    }

    /// Reads the queues of these durable sessions, if this node holds them.
    pub(super) fn wake(&mut self, client_ids: &[Box<str>]) {
        for c in client_ids {
            if let Some(s) = self
                .by_client
                .get(&**c)
                .and_then(|id| self.sessions.get(id))
            {
                read(s);
            }
        }
    }

    /// Once a second: reads the queues of the connected durable sessions, in case a wake was
    /// lost (a publisher whose table was stale, pub/sub while Redis was away).
    pub(super) fn poll_queues(&mut self) {
        if self.durable.is_none() {
            return;
        }
        for s in self.sessions.values() {
            if s.is_connected() {
                read(s);
            }
        }
    }

    /// The store link of a session with this expiry: `Some` for a durable one.
    pub(super) fn session_store(&self, expiry_interval: u32) -> Option<SessionStore> {
        let d = self.durable.as_ref()?;
        (expiry_interval > 0).then(|| SessionStore {
            ops: d.ops.clone(),
            last: EntryId::default(),
        })
    }

    /// A session read back from the store: its subscriptions into the tree (announced to the
    /// other nodes), its unacknowledged and queued messages into the session.
    pub(super) fn take_back(&mut self, id: SessionId, resumed: Resumed) {
        for sub in &resumed.record.subs {
            let (Ok((group, filter)), Some(opts)) =
                (topic::parse_shared(&sub.filter), sub.options())
            else {
                continue;
            };
            if topic::validate_filter(filter).is_err() {
                continue;
            }
            if self.subs.subscribe(id, group, filter, opts) {
                self.remote.subscribed(&sub.filter);
            }
            if let Some(s) = self.sessions.get_mut(&id) {
                s.filters
                    .get_or_insert_default()
                    .insert(sub.filter.as_str().into(), opts);
            }
        }
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, std::sync::atomic::Ordering::Relaxed);
        if let Some(s) = self.sessions.get_mut(&id) {
            if let (Some(store), Some(last)) =
                (s.store.as_mut(), resumed.entries.iter().map(|e| e.id).max())
            {
                store.last = last;
            }
            let limits = (self.config.max_queued, self.config.max_queued_bytes);
            s.resume(resumed.entries, limits, &self.metrics);
        }
    }

    /// Writes a durable session's record; `done` once it is written (at once for the others).
    pub(super) fn save(&mut self, session: SessionId, done: Done) {
        let Some((s, d)) = self.sessions.get(&session).zip(self.durable.as_ref()) else {
            return done(true);
        };
        if s.store.is_none() {
            return done(true);
        }
        let record = Record {
            node: d.node.to_string(),
            expiry: s.expiry_interval,
            disconnected_at: (!s.is_connected())
                .then(|| u64::try_from(crate::ingest::now_ms()).unwrap_or(0)),
            subs: sub_records(s),
        };
        let op = Op::Save {
            client_id: s.client_id.clone(),
            record,
            done: Some(done),
        };
        if let Err(
            TrySendError::Full(Op::Save {
                done: Some(done), ..
            })
            | TrySendError::Closed(Op::Save {
                done: Some(done), ..
            }),
        ) = d.ops.try_send(op)
        {
            done(false);
        }
    }

    /// Tells the store that a durable session ended here.
    pub(super) fn ended_stored(s: &Session, end: End) {
        let Some(store) = &s.store else {
            return;
        };
        let client_id = s.client_id.clone();
        let op = match end {
            End::Forget => Op::Forget {
                client_id,
                mine_only: true,
            },
            End::Drop => Op::Drop { client_id },
            End::Silent => return,
        };
        let _ = store.ops.try_send(op);
    }

    /// Queues a QoS 1/2 `message` for the durable sessions it matches; returns their client
    /// ids (they do not get it live). `done` once stored: at once when there is nothing to
    /// store, `false` when the store's queue is full (then the copies go live instead).
    pub(super) fn persist(&mut self, message: &Arc<Message>, done: Option<Done>) -> Vec<Arc<str>> {
        let finish = |done: Option<Done>, ok| {
            if let Some(done) = done {
                done(ok);
            }
        };
        let Some(d) = &self.durable else {
            finish(done, true);
            return Vec::new();
        };
        if message.qos == fleetmq_codec::QoS::AtMostOnce || !d.table.any() {
            finish(done, true);
            return Vec::new();
        }
        let origin = match message.origin {
            Origin::Session(id) => self.sessions.get(&id).map(|s| s.client_id.clone()),
            Origin::Broker => None,
        };
        let targets = d.table.targets(message, origin.as_deref());
        if targets.is_empty() {
            finish(done, true);
            return Vec::new();
        }
        let ids = targets.iter().map(|t| t.client_id.clone()).collect();
        let op = Op::Persist {
            message: message.clone(),
            targets,
            done,
            live_on_failure: false,
        };
        match d.ops.try_send(op) {
            Ok(()) => ids,
            Err(TrySendError::Full(op) | TrySendError::Closed(op)) => {
                if let Op::Persist { done, .. } = op {
                    finish(done, false);
                }
                Vec::new()
            }
        }
    }
}

/// Asks the store for a durable session's queue after what it has.
fn read(s: &Session) {
    if let Some(store) = &s.store {
        let _ = store.ops.try_send(Op::Read {
            client_id: s.client_id.clone(),
            after: store.last,
        });
    }
}

/// A session's subscriptions as its record holds them.
fn sub_records(s: &Session) -> Vec<SubRecord> {
    s.filters
        .iter()
        .flat_map(|f| f.iter())
        .map(|(f, o)| SubRecord::new(f, *o))
        .collect()
}

/// CONNACK 0x88: the session store could not be reached.
fn refuse(req: ConnectRequest) {
    let _ = req.reply.send(ConnectReply {
        session: SessionId(0),
        session_present: false,
        quota_exceeded: false,
        unavailable: true,
    });
}
