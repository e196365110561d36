//! The bridge's own counters and gauges, rendered after the broker's on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the hub, the clients and the HTTP handlers. Plain atomics: updating one is a
/// single relaxed add on the delivery path.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connected `/ws` clients.
    pub ws_clients: AtomicU64,
    /// Connected `/api/v1/stream` clients.
    pub sse_clients: AtomicU64,
    /// Connected `/mqtt` clients.
    pub mqtt_ws_clients: AtomicU64,
    /// A pending state replaced by a newer one before it was sent (latest wins).
    pub deliveries_coalesced: AtomicU64,
    /// Messages not delivered because a client's bounded queue was full.
    pub deliveries_dropped: AtomicU64,
    /// Clients closed because they could not keep up (WebSocket close code 1013).
    pub slow_clients_closed: AtomicU64,
    /// States sent to clients (one per `update`, one per vehicle of an `updates` frame).
    pub updates_sent: AtomicU64,
    /// Event messages sent to clients.
    pub events_sent: AtomicU64,
    /// States pushed by the broker.
    pub states_pushed: AtomicU64,
    /// Events pushed by the broker.
    pub events_pushed: AtomicU64,
    /// States refused because the hub already holds `max_vehicles` vehicles.
    pub states_refused: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

impl Metrics {
    /// Appends the bridge metrics in the Prometheus text format; `vehicles` is the hub's size.
    pub fn render(&self, vehicles: usize, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 12] = [
            (
                "fleetmq_bridge_ws_clients",
                "gauge",
                "Connected /ws clients.",
                get(&self.ws_clients),
            ),
            (
                "fleetmq_bridge_sse_clients",
                "gauge",
                "Connected SSE clients.",
                get(&self.sse_clients),
            ),
            (
                "fleetmq_bridge_mqtt_ws_clients",
                "gauge",
                "Connected MQTT-over-WebSocket clients.",
                get(&self.mqtt_ws_clients),
            ),
            (
                "fleetmq_bridge_vehicles",
                "gauge",
                "Vehicles with a known state.",
                vehicles as u64,
            ),
            (
                "fleetmq_bridge_deliveries_coalesced_total",
                "counter",
                "Pending states replaced by a newer one before sending.",
                get(&self.deliveries_coalesced),
            ),
            (
                "fleetmq_bridge_deliveries_dropped_total",
                "counter",
                "Messages dropped because a client queue was full.",
                get(&self.deliveries_dropped),
            ),
            (
                "fleetmq_bridge_slow_clients_closed_total",
                "counter",
                "Clients closed for not keeping up (1013).",
                get(&self.slow_clients_closed),
            ),
            (
                "fleetmq_bridge_updates_sent_total",
                "counter",
                "States sent to clients, in update and batched updates messages.",
                get(&self.updates_sent),
            ),
            (
                "fleetmq_bridge_events_sent_total",
                "counter",
                "Event messages sent to clients.",
                get(&self.events_sent),
            ),
            (
                "fleetmq_bridge_states_pushed_total",
                "counter",
                "States pushed by the broker.",
                get(&self.states_pushed),
            ),
            (
                "fleetmq_bridge_events_pushed_total",
                "counter",
                "Events pushed by the broker.",
                get(&self.events_pushed),
            ),
            (
                "fleetmq_bridge_states_refused_total",
                "counter",
                "States refused at the vehicle limit.",
                get(&self.states_refused),
            ),
        ];
        for (name, kind, help, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// Counts a client in a gauge for as long as it lives.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    /// Adds one now, subtracts it on drop.
    pub(crate) fn hold(g: &'a AtomicU64) -> Gauge<'a> {
        inc(g);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        dec(self.0);
    }
}
