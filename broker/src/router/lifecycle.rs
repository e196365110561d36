//! A session's life in the router: CONNECT attaches a connection (taking over an old one),
//! DISCONNECT or a lost connection detaches it and publishes or schedules its will, and the
//! one-second tick ends expired sessions and fires delayed wills.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use fleetmq_codec::reason;

use super::durable::Resumed;
use super::session::Session;
use super::stored::End;
use super::{Router, reader};
use crate::link::{ConnId, ConnectReply, ConnectRequest, SessionId, Will};
use crate::message::{Message, Origin};
use crate::topic;

pub(super) struct PendingWill {
    at: Instant,
    will: Will,
    client_id: Arc<str>,
}

impl Router {
    pub(super) fn connect(&mut self, req: ConnectRequest) {
        // A durable session is opened in the store first (`stored`).
        if let Some(req) = self.park(req) {
            self.connect_now(req, None);
        }
    }

    /// Attaches the connection: to the local session, to `resumed` (read back from the
    /// store), or to a new one.
    pub(super) fn connect_now(&mut self, req: ConnectRequest, resumed: Option<Resumed>) {
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
                    // The store was told by `park`.
                    self.end_session(id, End::Silent);
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
                session: SessionId(0),
                session_present: false,
                quota_exceeded: true,
                unavailable: false,
            });
            return;
        }
        let resumed = resumed.filter(|_| id.is_none());
        session_present |= resumed.is_some();
        let id = id.unwrap_or_else(|| {
            let id = SessionId(self.next_session);
            self.next_session += 1;
            self.sessions
                .insert(id, Box::new(Session::new(req.client_id.clone())));
            self.by_client.insert(req.client_id.clone(), id);
            id
        });
        let store = self.session_store(req.expiry_interval);
        if let Some(s) = self.sessions.get_mut(&id) {
            match (&mut s.store, store) {
                (Some(_), Some(_)) => {}
                (slot, store) => *slot = store.map(Box::new),
            }
        }
        if let Some(r) = resumed {
            self.take_back(id, r);
        }
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        s.expiry_interval = req.expiry_interval;
        s.expires_at = None;
        s.receive_maximum = req.receive_maximum.max(1);
        s.max_packet_size = req.max_packet_size;
        s.aliases = req.aliases;
        s.reader = req.reader.map(|r| Box::new(reader::Reader::new(r)));
        let conn = req.link.id;
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
        self.remote.connected(&req.client_id);
        let reply = ConnectReply {
            session: id,
            session_present,
            quota_exceeded: false,
            unavailable: false,
        };
        if req.reply.send(reply).is_err() {
            // The connection is gone (it gave up while its session was being opened): it will
            // never report its end, so the session is detached here, without a will.
            self.disconnect(id, conn, false, None);
        }
    }

    /// The client connected to another node (`remote::Incoming::Kick`): its connection here
    /// gets DISCONNECT 0x8E as on a local takeover, an undelayed will goes out (a delayed
    /// one is cancelled by the reconnect), and the session here ends: it lives on the
    /// other node now.
    pub(super) fn kicked(&mut self, client_id: &str) {
        let Some(id) = self.by_client.get(client_id).copied() else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&id)
            && let Some(old) = s.link.take()
        {
            old.disconnect(
                reason::SESSION_TAKEN_OVER,
                Some("another connection took over this session"),
            );
        }
        self.delayed_wills.retain(|w| &*w.client_id != client_id);
        if let Some(will) = self.wills.remove(&id)
            && will.delay == 0
        {
            self.publish_will(will);
        }
        self.end_session(id, End::Drop);
    }

    pub(super) fn disconnect(
        &mut self,
        session: SessionId,
        conn: ConnId,
        publish_will: bool,
        expiry: Option<u32>,
    ) {
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
            self.end_session(session, End::Forget);
            return;
        }
        if expiry_interval != u32::MAX
            && let Some(s) = self.sessions.get_mut(&session)
        {
            s.expires_at = Some(now + Duration::from_secs(expiry_interval.into()));
        }
        self.save(session, Box::new(|_| {}));
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

    /// Ends the session here; `end` says what becomes of a durable session's stored copy.
    pub(super) fn end_session(&mut self, id: SessionId, end: End) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        Router::ended_stored(&s, end);
        if self.by_client.get(&s.client_id) == Some(&id) {
            self.by_client.remove(&s.client_id);
        }
        for f in s.filters.iter().flat_map(|f| f.keys()) {
            if let Ok((group, filter)) = topic::parse_shared(f)
                && self.subs.unsubscribe(id, group, filter)
            {
                self.remote.unsubscribed(f);
            }
        }
        self.wills.remove(&id);
        self.remote.ended(&s.client_id);
        self.metrics
            .sessions
            .store(self.sessions.len() as i64, Relaxed);
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, Relaxed);
    }

    /// Session expiry and delayed wills.
    pub(super) fn expire(&mut self, now: Instant) {
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.link.is_none() && s.expires_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.end_session(id, End::Forget);
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
}
