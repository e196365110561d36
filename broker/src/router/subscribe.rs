//! SUBSCRIBE and UNSUBSCRIBE against the subscription tree, and the retained messages a new
//! subscription asks for (sent once the connection has written SUBACK).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fleetmq_codec::{ByteString, reason};

use super::Router;
use crate::link::{Delivery, SessionId, SubRequest};
use crate::topic;

/// Distinct filters one session may hold. Each costs the subscription tree and the session
/// some memory, so a client must not be able to add them without end; past this a new filter
/// gets SUBACK 0x97 (quota exceeded; 0x80 in 3.1.1). Generous for real clients, which follow
/// fleets with wildcards.
pub const MAX_FILTERS_PER_SESSION: usize = 10_000;

impl Router {
    pub(super) fn subscribe(
        &mut self,
        session: SessionId,
        requests: &[SubRequest],
    ) -> (Vec<u8>, Vec<bool>) {
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
            if held
                .is_some_and(|f| f.len() >= MAX_FILTERS_PER_SESSION && !f.contains_key(&*r.filter))
            {
                codes.push(reason::QUOTA_EXCEEDED);
                continue;
            }
            if let Some(n) = new.last_mut() {
                *n = self.subs.subscribe(session, group, filter, r.opts);
                if *n {
                    self.remote.subscribed(&r.filter);
                }
            }
            s.filters
                .get_or_insert_default()
                .insert(Box::from(&*r.filter), r.opts);
            codes.push(r.opts.qos as u8);
        }
        self.metrics
            .subscriptions
            .store(self.subs.len() as i64, Relaxed);
        (codes, new)
    }

    pub(super) fn send_retained(
        &mut self,
        session: SessionId,
        requests: &[SubRequest],
        new: &[bool],
    ) {
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
                        entry: None,
                    },
                    &self.metrics,
                );
            }
        }
        s.flush(now, &self.metrics);
    }

    pub(super) fn unsubscribe(&mut self, session: SessionId, filters: &[ByteString]) -> Vec<u8> {
        let Some(s) = self.sessions.get_mut(&session) else {
            return vec![reason::UNSPECIFIED_ERROR; filters.len()];
        };
        let codes = filters
            .iter()
            .map(|f| {
                let removed = s
                    .filters
                    .as_mut()
                    .is_some_and(|fs| fs.remove(&**f).is_some())
                    && topic::parse_shared(f)
                        .is_ok_and(|(g, inner)| self.subs.unsubscribe(session, g, inner));
                if removed {
                    self.remote.unsubscribed(f);
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
}
