//! Local routing: one message to every matching session of this node, and into the retained
//! store. Messages from other nodes come through here too (`remote`), so a node delivers the
//! same way whoever published.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use fleetmq_codec::QoS;

use super::subscriptions::Target;
use super::{Router, durable};
use crate::link::{Delivery, SessionId};
use crate::message::{Message, Origin};

/// Which shared groups of this node a message is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Groups<'a> {
    /// Every matching group: a message published on this node.
    All,
    /// Only these (`$share/G/F`): a message from another node, which picked this node for
    /// them and serves the other groups elsewhere.
    Only(&'a [Box<str>]),
}

impl Router {
    /// Delivers a message published on this node to every matching subscription.
    pub(super) fn route_local(&mut self, message: &Arc<Message>) {
        self.route_local_with::<Box<str>>(message, Groups::All, &[]);
    }

    /// Delivers a message to every matching subscription (of shared groups, those `groups`
    /// names): one copy per session, with the highest matching QoS and every matching
    /// subscription identifier. The durable sessions in `durable` get their QoS 1/2 copy from
    /// their queue instead (`stored`).
    pub(super) fn route_local_with<S: AsRef<str>>(
        &mut self,
        message: &Arc<Message>,
        groups: Groups<'_>,
        durable: &[S],
    ) {
        if message.retain {
            // A client's publish that raced past the connection's check is delivered but not
            // retained; the broker's own `vehicles/{id}` are bounded by --max-vehicles instead.
            if self.admits_retained(message) {
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
        let readable = |id: SessionId| {
            sessions
                .get(&id)
                .is_some_and(|s| s.reader.as_ref().is_none_or(|r| r.may_read_uncached(topic)))
        };
        self.subs.for_each_match(topic, |t| match t {
            Target::Direct(s, o) => targets.push((s, o, false)),
            Target::Shared(g) => {
                if let Groups::Only(names) = groups
                    && !names.iter().any(|n| **n == *g.name())
                {
                    return;
                }
                let connected =
                    |id| readable(id) && sessions.get(&id).is_some_and(|s| s.is_connected());
                if let Some((s, o)) = g.pick(connected, readable) {
                    targets.push((s, o, true));
                }
            }
        });
        targets.sort_unstable_by_key(|(s, _, _)| *s);
        // A durable session's QoS 1/2 copy that the publishing node did not queue (its table
        // did not have the session yet) is queued here instead of being delivered live.
        let queue_here = self
            .durable
            .as_ref()
            .filter(|d| message.qos != QoS::AtMostOnce && d.table.queues(message))
            .map(|d| d.node.clone());
        let mut unstored = Vec::new();
        let mut i = 0;
        while i < targets.len() {
            let sid = targets[i].0;
            let mut qos = QoS::AtMostOnce;
            let mut retain = false;
            let mut sub_ids = Vec::new();
            let mut any = false;
            let mut shared = false;
            while i < targets.len() && targets[i].0 == sid {
                let o = targets[i].1;
                shared |= targets[i].2;
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
                if qos != QoS::AtMostOnce && s.store.is_some() {
                    if durable.iter().any(|c| c.as_ref() == &*s.client_id) {
                        continue;
                    }
                    if let Some(node) = queue_here.as_ref().filter(|_| !shared) {
                        unstored.push(durable::Target {
                            client_id: s.client_id.clone(),
                            node: node.clone(),
                            qos,
                            retain,
                            sub_ids,
                        });
                        continue;
                    }
                }
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
                        entry: None,
                    },
                    (self.config.max_queued, self.config.max_queued_bytes),
                    now,
                    &self.metrics,
                );
            }
        }
        self.scratch = targets;
        if !unstored.is_empty() {
            self.persist_here(message, unstored);
        }
    }
}
