//! Redis health and write figures, rendered into `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Upper bounds of the write-duration histogram buckets, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Counters shared by the writer, the SOS log and the HTTP side.
#[derive(Debug, Default)]
pub struct Stats {
    /// Whether the last Redis round trip succeeded.
    pub up: AtomicBool,
    /// Batches (pipelines) written.
    pub batches: AtomicU64,
    /// Failed round trips.
    pub errors: AtomicU64,
    /// Commands the server refused inside an otherwise written pipeline.
    pub command_errors: AtomicU64,
    /// Vehicle hash writes Redis refused because this node's lease was gone (`--cluster`).
    pub fenced: AtomicU64,
    /// SOS records written.
    pub sos_written: AtomicU64,
    /// SOS messages published without having been persisted (after the 2 s give-up).
    pub sos_unpersisted: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Stats {
    /// Records one pipelined write that took `seconds`.
    pub fn observe_write(&self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add((seconds * 1e9) as u64, Relaxed);
    }

    /// Appends the Redis metrics; `pending` is what waits to be written, `dropped` what the
    /// bounded buffers had to drop.
    pub fn render(&self, out: &mut String, pending: usize, dropped: u64) {
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            out,
            "fleetmq_redis_up",
            "1 when the last Redis round trip succeeded",
            u64::from(self.up.load(Relaxed)),
        );
        gauge(
            out,
            "fleetmq_redis_pending",
            "vehicles and SOS messages waiting to be written to Redis",
            pending as u64,
        );
        counter(
            out,
            "fleetmq_redis_batches_total",
            "pipelined batches written to Redis",
            self.batches.load(Relaxed),
        );
        counter(
            out,
            "fleetmq_redis_errors_total",
            "failed Redis round trips",
            self.errors.load(Relaxed),
        );
        counter(
            out,
            "fleetmq_redis_command_errors_total",
            "commands Redis refused inside a written batch",
            self.command_errors.load(Relaxed),
        );
        counter(
            out,
            "fleetmq_redis_dropped_total",
            "updates or track points dropped from the full write-behind buffer",
            dropped,
        );
        counter(
            out,
            "fleetmq_redis_fenced_total",
            "vehicle state writes refused because another node holds the vehicle's lease (--cluster)",
            self.fenced.load(Relaxed),
        );
        counter(
            out,
            "fleetmq_redis_sos_written_total",
            "SOS messages written to fleetmq:sos",
            self.sos_written.load(Relaxed),
        );
        counter(
            out,
            "fleetmq_redis_sos_unpersisted_total",
            "SOS messages published before Redis acknowledged them (Redis down, or the 2 s give-up)",
            self.sos_unpersisted.load(Relaxed),
        );
        let name = "fleetmq_redis_write_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} duration of one pipelined Redis write\n# TYPE {name} histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.buckets[i].load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_and_cumulative_buckets() {
        let s = Stats::default();
        s.up.store(true, Relaxed);
        s.observe_write(0.003);
        s.observe_write(0.2);
        let mut out = String::new();
        s.render(&mut out, 7, 0);
        assert!(out.contains("\nfleetmq_redis_up 1\n"));
        assert!(out.contains("\nfleetmq_redis_pending 7\n"));
        assert!(out.contains("fleetmq_redis_write_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("fleetmq_redis_write_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("fleetmq_redis_write_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(out.contains("fleetmq_redis_write_seconds_count 2\n"));
    }
}
