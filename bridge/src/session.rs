//! A stream client's session with the hub: its named subscriptions, how subscribing files them in
//! the index and queues the snapshot, and the clean-up when the connection ends.
//!
//! Owned by the connection's task (WebSocket or SSE); the writer side only needs the [`Client`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, Outgoing, SubKey, SubMeta};
use crate::filter::Criteria;
use crate::fleet::to_json;
use crate::frames;
use crate::hub::Hub;
use crate::port::Access;
use crate::subs::SubRef;

/// Largest `max_hz` a subscription may ask for (docs/http-api.md#requests).
pub const MAX_HZ: f64 = 10.0;

/// What a subscription asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SubSpec {
    /// Which vehicles.
    pub criteria: Criteria,
    /// Whether to send their states (snapshot + updates).
    pub states: bool,
    /// Whether to send their events.
    pub events: bool,
    /// Updates per vehicle per second at most, in (0, 10].
    pub max_hz: f64,
    /// Updates as one `updates` frame per `1/max_hz` holding every changed vehicle.
    pub batch: bool,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubError {
    /// The client already has the maximum number of subscriptions.
    #[error("too many subscriptions (at most {0})")]
    TooMany(usize),
}

struct Registered {
    key: SubKey,
    criteria: Arc<Criteria>,
    states: bool,
}

/// One connected stream client.
pub struct Session {
    hub: Hub,
    client: Arc<Client>,
    /// What the client may read; `None` = everything.
    access: Option<Arc<dyn Access>>,
    subs: HashMap<String, Registered>,
    next_key: SubKey,
}

impl Session {
    pub(crate) fn new(hub: Hub, client: Arc<Client>, access: Option<Arc<dyn Access>>) -> Session {
        Session {
            hub,
            client,
            access,
            subs: HashMap::new(),
            next_key: 0,
        }
    }

    /// The client's outgoing queue.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Subscribes under `id` (replacing a subscription of the same id): files it, then queues its
    /// snapshot, then lets its updates flow, so no update overtakes the snapshot and none is lost
    /// between them.
    ///
    /// # Errors
    /// [`SubError::TooMany`] at the per-client limit.
    pub fn subscribe(&mut self, id: &str, spec: SubSpec) -> Result<(), SubError> {
        self.unsubscribe(id);
        let max = self.hub.config().max_subscriptions;
        if self.subs.len() >= max {
            return Err(SubError::TooMany(max));
        }
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1);
        let sub_json = to_json(&id);
        let hz = if spec.max_hz.is_finite() {
            spec.max_hz.clamp(0.01, MAX_HZ)
        } else {
            1.0
        };
        let interval = Duration::from_secs_f64(1.0 / hz);
        self.client.add_sub(
            key,
            SubMeta {
                sub_json: sub_json.clone(),
                interval,
                ready: false,
                batch: spec.batch,
            },
        );
        let criteria = Arc::new(spec.criteria);
        self.hub.file_sub(SubRef {
            client: self.client.clone(),
            sub: key,
            criteria: criteria.clone(),
            states: spec.states,
            events: spec.events,
            access: self.access.clone(),
        });
        let found = if spec.states {
            self.hub.snapshot(&criteria, self.access.as_deref())
        } else {
            Vec::new()
        };
        let mut text = frames::states("snapshot", &sub_json, found.iter());
        if spec.events {
            // The snapshot of an events subscription carries the last events too.
            text.pop();
            crate::recent::append_snapshot_events(
                &mut text,
                &self.hub,
                &criteria,
                self.access.as_deref(),
            );
            text.push('}');
        }
        self.client.activate(
            key,
            Outgoing {
                kind: "snapshot",
                text,
            },
        );
        self.subs.insert(
            id.to_owned(),
            Registered {
                key,
                criteria,
                states: spec.states,
            },
        );
        Ok(())
    }

    /// Removes the subscription `id`; false if there was none.
    pub fn unsubscribe(&mut self, id: &str) -> bool {
        let Some(r) = self.subs.remove(id) else {
            return false;
        };
        self.hub
            .unfile_sub(self.client.id, r.key, &r.criteria, r.states);
        self.client.remove_sub(r.key);
        true
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let subs = self.subs.values().map(|r| (r.key, &r.criteria, r.states));
        self.hub.forget_client(self.client.id, subs);
    }
}
