//! `$SYS/broker/...` statistics, published retained every ten seconds as Mosquitto does.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use fleetmq_codec::{Bytes, QoS};

use super::RouterStats;
use crate::message::{Message, Origin};
use crate::metrics::Metrics;

const INTERVAL: Duration = Duration::from_secs(10);

pub struct Sys {
    next: Instant,
}

impl Sys {
    pub fn new() -> Sys {
        Sys {
            next: Instant::now(),
        }
    }

    /// The `$SYS` messages to publish now, if ten seconds have passed since the last ones.
    pub fn due(&mut self, now: Instant, m: &Metrics, stats: RouterStats) -> Vec<Arc<Message>> {
        if now < self.next {
            return Vec::new();
        }
        self.next = now + INTERVAL;
        let values: [(&str, String); 14] = [
            ("version", format!("fleetmq {}", env!("CARGO_PKG_VERSION"))),
            (
                "uptime",
                format!("{} seconds", m.started.elapsed().as_secs()),
            ),
            ("clients/connected", stats.connected.to_string()),
            ("clients/total", stats.sessions.to_string()),
            (
                "clients/disconnected",
                (stats.sessions - stats.connected).to_string(),
            ),
            (
                "messages/received",
                m.messages_received.load(Relaxed).to_string(),
            ),
            ("messages/sent", m.messages_sent.load(Relaxed).to_string()),
            (
                "messages/dropped",
                m.messages_dropped.load(Relaxed).to_string(),
            ),
            (
                "messages/expired",
                m.messages_expired.load(Relaxed).to_string(),
            ),
            ("bytes/received", m.bytes_received.load(Relaxed).to_string()),
            ("bytes/sent", m.bytes_sent.load(Relaxed).to_string()),
            ("subscriptions/count", stats.subscriptions.to_string()),
            ("retained messages/count", stats.retained.to_string()),
            ("updates/rejected", m.rejected_total().to_string()),
        ];
        values
            .into_iter()
            .map(|(name, value)| {
                Arc::new(Message {
                    topic: format!("$SYS/broker/{name}").into(),
                    payload: Bytes::from(value),
                    qos: QoS::AtMostOnce,
                    retain: true,
                    properties: None,
                    expires_at: None,
                    origin: Origin::Broker,
                })
            })
            .collect()
    }
}
