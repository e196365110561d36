//! An application message as the router holds it: shared by every subscriber it is delivered to
//! (one allocation per publish, not per delivery).

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use fleetmq_codec::{ByteString, Bytes, Properties, QoS};

use crate::link::SessionId;

/// Who published a message; used for no-local and for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A client session (its router-assigned id).
    Session(SessionId),
    /// The broker itself: processed state, events, `$SYS`, pings from HTTP.
    Broker,
}

#[derive(Debug)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Properties passed through to subscribers (payload format, content type, response
    /// topic, correlation data, user properties). Topic alias, subscription identifiers and
    /// message expiry are set per delivery. `None` when there are none (all of 3.1.1, most
    /// of v5): a message then stays small in every queue and in the retained store, and
    /// messages with the same properties can share them.
    pub properties: Option<Arc<Properties>>,
    /// When the message expiry interval runs out; `None` never.
    pub expires_at: Option<Instant>,
    pub origin: Origin,
}

/// Properties for a message: `None` when `p` carries nothing.
pub fn shared_properties(p: Properties) -> Option<Arc<Properties>> {
    (p != Properties::default()).then(|| Arc::new(p))
}

static NO_PROPERTIES: LazyLock<Properties> = LazyLock::new(Properties::default);

impl Message {
    /// The message's properties, empty when it has none.
    pub fn properties(&self) -> &Properties {
        self.properties.as_deref().unwrap_or(&NO_PROPERTIES)
    }

    /// Seconds of expiry left at `now` (rounded up), `None` without expiry.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}
