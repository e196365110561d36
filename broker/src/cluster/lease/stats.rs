//! The lease counters and their `/metrics` lines (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// Counted by [`super::Leases`].
#[derive(Debug, Default)]
pub struct Stats {
    pub acquired: AtomicU64,
    pub handoffs: AtomicU64,
    pub taken_over: AtomicU64,
    pub released: AtomicU64,
    pub lost: AtomicU64,
    pub busy: AtomicU64,
    pub unleased: AtomicU64,
    pub renew_skipped: AtomicU64,
    pub acquire_calls: AtomicU64,
}

impl Stats {
    /// Appends the gauge of `held` leases and every counter.
    pub fn render(&self, out: &mut String, held: usize) {
        let _ = writeln!(
            out,
            "# HELP fleetmq_cluster_leases vehicles this node holds the lease of\n# TYPE fleetmq_cluster_leases gauge\nfleetmq_cluster_leases {held}"
        );
        let counters = [
            ("acquired", &self.acquired, "leases acquired"),
            (
                "handoffs",
                &self.handoffs,
                "leases acquired from another node (asked to release, or gone)",
            ),
            (
                "taken_over",
                &self.taken_over,
                "leases taken from a node no longer listening on Redis",
            ),
            ("released", &self.released, "leases released"),
            ("lost", &self.lost, "leases found taken by another node"),
            (
                "busy",
                &self.busy,
                "fixes refused: another node kept the vehicle past the handoff wait",
            ),
            (
                "unleased",
                &self.unleased,
                "fixes processed without a lease while Redis was unreachable",
            ),
            (
                "renew_skipped",
                &self.renew_skipped,
                "lease renewals skipped: a fenced state write had extended the lease within 2 s",
            ),
            (
                "acquire_calls",
                &self.acquire_calls,
                "script calls taking first leases, each for up to 64 vehicles arriving together",
            ),
        ];
        for (name, value, help) in counters {
            let name = format!("fleetmq_cluster_lease_{name}_total");
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
    }
}
