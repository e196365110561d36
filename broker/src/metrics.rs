//! Broker counters, shared by connections and the router as relaxed atomics (no locks on the
//! hot path), rendered as `$SYS` topics and in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::ingest::Source;

/// One counter per [`Source`].
type PerSource = [AtomicU64; Source::ALL.len()];

/// Upper bounds (seconds) of the processing-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
];

#[derive(Debug)]
pub struct Metrics {
    pub started: Instant,
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Messages dropped because a session's queue was full (oldest first).
    pub messages_dropped: AtomicU64,
    /// Messages whose expiry interval ran out before delivery.
    pub messages_expired: AtomicU64,
    /// Publishes refused by the ACL.
    pub publishes_denied: AtomicU64,
    /// Connections closed for a protocol violation or malformed packet.
    pub protocol_errors: AtomicU64,
    /// Connections refused at accept: `--max-connections` or the per-IP connect rate.
    pub connections_refused: AtomicU64,
    /// CONNECTs refused for bad credentials or a refused identity, and back-off refusals.
    pub logins_refused: AtomicU64,
    /// Clients disconnected for exceeding `--max-publish-rate`.
    pub publish_rate_exceeded: AtomicU64,
    /// Gauges the router refreshes.
    pub sessions: AtomicI64,
    pub subscriptions: AtomicI64,
    /// Subscriptions whose filter can match a `fleet/{vehicle}/location` topic, kept by the
    /// router's subscription tree and read by every driver publish: with none, the raw location
    /// message is not routed (nobody could receive it). Not exported.
    pub location_subscriptions: Arc<AtomicUsize>,
    pub retained: AtomicI64,
    pub retained_bytes: AtomicI64,
    /// Vehicles tracked (the ingest's gauge).
    pub vehicles: AtomicI64,
    /// Refusals at the state limits (`--max-vehicles`, `--max-sessions`, `--max-retained*`).
    pub vehicles_refused: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub retained_refused: AtomicU64,
    updates_accepted: PerSource,
    updates_duplicate: PerSource,
    updates_jitter: PerSource,
    updates_rejected: Mutex<Vec<(Source, &'static str, u64)>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
            messages_expired: AtomicU64::new(0),
            publishes_denied: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            logins_refused: AtomicU64::new(0),
            publish_rate_exceeded: AtomicU64::new(0),
            sessions: AtomicI64::new(0),
            subscriptions: AtomicI64::new(0),
            location_subscriptions: Arc::default(),
            retained: AtomicI64::new(0),
            retained_bytes: AtomicI64::new(0),
            vehicles: AtomicI64::new(0),
            vehicles_refused: AtomicU64::new(0),
            sessions_refused: AtomicU64::new(0),
            retained_refused: AtomicU64::new(0),
            updates_accepted: Default::default(),
            updates_duplicate: Default::default(),
            updates_jitter: Default::default(),
            updates_rejected: Mutex::new(Vec::new()),
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_ns: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a rejected location update under its source and reason.
    pub fn reject(&self, source: Source, reason: &'static str) {
        let mut v = self
            .updates_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match v.iter_mut().find(|(s, r, _)| *s == source && *r == reason) {
            Some((_, _, n)) => *n += 1,
            None => v.push((source, reason, 1)),
        }
    }

    /// Counts a location update forwarded by the pipeline.
    pub fn accepted(&self, source: Source) {
        self.updates_accepted[source.index()].fetch_add(1, Relaxed);
    }

    /// Counts a location update dropped as a duplicate.
    pub fn duplicate(&self, source: Source) {
        self.updates_duplicate[source.index()].fetch_add(1, Relaxed);
    }

    /// Counts a location update dropped as jitter.
    pub fn jitter(&self, source: Source) {
        self.updates_jitter[source.index()].fetch_add(1, Relaxed);
    }

    /// Records the time one location update took from arrival to publication.
    pub fn observe_latency(&self, seconds: f64) {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add((seconds * 1e9) as u64, Relaxed);
    }

    pub fn rejected_total(&self) -> u64 {
        let v = self
            .updates_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        v.iter().map(|(_, _, n)| n).sum()
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self, out: &mut String) {
        let counters: [(&str, &str, u64); 15] = [
            (
                "fleetmq_connections_total",
                "MQTT connections accepted",
                self.connections_total.load(Relaxed),
            ),
            (
                "fleetmq_messages_received_total",
                "PUBLISH packets received",
                self.messages_received.load(Relaxed),
            ),
            (
                "fleetmq_messages_sent_total",
                "PUBLISH packets sent",
                self.messages_sent.load(Relaxed),
            ),
            (
                "fleetmq_bytes_received_total",
                "bytes read from MQTT clients",
                self.bytes_received.load(Relaxed),
            ),
            (
                "fleetmq_bytes_sent_total",
                "bytes written to MQTT clients",
                self.bytes_sent.load(Relaxed),
            ),
            (
                "fleetmq_messages_dropped_total",
                "messages dropped from full session queues",
                self.messages_dropped.load(Relaxed),
            ),
            (
                "fleetmq_messages_expired_total",
                "messages expired before delivery",
                self.messages_expired.load(Relaxed),
            ),
            (
                "fleetmq_publishes_denied_total",
                "publishes refused by the ACL",
                self.publishes_denied.load(Relaxed),
            ),
            (
                "fleetmq_protocol_errors_total",
                "connections closed for protocol errors",
                self.protocol_errors.load(Relaxed),
            ),
            (
                "fleetmq_connections_refused_total",
                "connections refused by --max-connections or the connect rate",
                self.connections_refused.load(Relaxed),
            ),
            (
                "fleetmq_logins_refused_total",
                "CONNECTs refused for credentials, identity or failed-login back-off",
                self.logins_refused.load(Relaxed),
            ),
            (
                "fleetmq_publish_rate_exceeded_total",
                "clients disconnected for exceeding the publish rate",
                self.publish_rate_exceeded.load(Relaxed),
            ),
            (
                "fleetmq_vehicles_refused_total",
                "location updates of a new vehicle refused at --max-vehicles",
                self.vehicles_refused.load(Relaxed),
            ),
            (
                "fleetmq_sessions_refused_total",
                "CONNECTs of a new session refused at --max-sessions (CONNACK 0x97)",
                self.sessions_refused.load(Relaxed),
            ),
            (
                "fleetmq_retained_refused_total",
                "retained messages of a new topic refused at --max-retained or --max-retained-bytes",
                self.retained_refused.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges: [(&str, &str, i64); 6] = [
            (
                "fleetmq_connections",
                "MQTT connections open",
                self.connections.load(Relaxed),
            ),
            (
                "fleetmq_sessions",
                "MQTT sessions (connected or not)",
                self.sessions.load(Relaxed),
            ),
            (
                "fleetmq_subscriptions",
                "MQTT subscriptions",
                self.subscriptions.load(Relaxed),
            ),
            (
                "fleetmq_retained_messages",
                "retained messages",
                self.retained.load(Relaxed),
            ),
            (
                "fleetmq_retained_bytes",
                "topic and payload bytes of the retained messages",
                self.retained_bytes.load(Relaxed),
            ),
            (
                "fleetmq_vehicles",
                "vehicles tracked",
                self.vehicles.load(Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.render_updates(out);
        let name = "fleetmq_processing_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} location update arrival to publication\n# TYPE {name} histogram"
        );
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count {count}");
    }

    /// The ingest counters, one series per `source` (every source, so a dashboard sees zeros).
    fn render_updates(&self, out: &mut String) {
        // Filtered = dropped as duplicate or jitter.
        let filtered = Source::ALL.map(|s| {
            self.updates_duplicate[s.index()].load(Relaxed)
                + self.updates_jitter[s.index()].load(Relaxed)
        });
        let accepted = Source::ALL.map(|s| self.updates_accepted[s.index()].load(Relaxed));
        let per_source = [
            (
                "fleetmq_updates_accepted_total",
                "location updates forwarded, by source",
                accepted,
            ),
            (
                "fleetmq_updates_filtered_total",
                "location updates dropped as duplicate or jitter, by source",
                filtered,
            ),
        ];
        for (name, help, values) in per_source {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (s, v) in Source::ALL.iter().zip(values) {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", s.as_str());
            }
        }
        let name = "fleetmq_updates_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} location updates rejected, by source and reason\n# TYPE {name} counter"
        );
        let v = self
            .updates_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (source, reason, n) in v.iter() {
            let source = source.as_str();
            let _ = writeln!(out, "{name}{{source=\"{source}\",reason=\"{reason}\"}} {n}");
        }
    }
}

/// Appends one Prometheus sample with its `# HELP` and `# TYPE` lines (`kind`: counter, gauge).
pub fn write_metric(out: &mut String, kind: &str, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}
