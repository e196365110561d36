//! Shared measurement plumbing: the latency summary of docs/bench.md built from an HdrHistogram,
//! the JSON file writer, the once-a-second progress line on stderr and the final table.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms record, microseconds (60 s); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low 1, high >= 2, sigfig <= 5): cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// Records `us` microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Latency percentiles in microseconds, as docs/bench.md's `latency_us` object.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h`; all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// Table rows `(name, value)`, formatted in ms with µs precision.
    pub fn rows(&self) -> Vec<(String, String)> {
        [
            ("latency p50", self.p50),
            ("latency p90", self.p90),
            ("latency p99", self.p99),
            ("latency p99.9", self.p999),
            ("latency max", self.max),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), format!("{:.3} ms", v as f64 / 1000.0)))
        .collect()
    }
}

/// Writes `value` as one JSON object to `path` (when given).
///
/// # Errors
/// The file cannot be written.
pub fn write_json<T: Serialize>(path: Option<&Path>, value: &T) -> Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Writes the distribution of `h` as CSV `percentile,latency_us` (when a path is given), from
/// HdrHistogram's quantile iteration: dense towards the tail, which is what a percentile plot needs.
///
/// # Errors
/// The file cannot be written.
pub fn write_percentiles(path: Option<&Path>, h: &Histogram<u64>) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut text = String::from("percentile,latency_us\n");
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to() * 100.0;
            text.push_str(&format!(
                "{q:.6},{}\n",
                h.highest_equivalent(v.value_iterated_to())
            ));
        }
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Prints a two-column table on stdout.
pub fn print_table(title: &str, rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("{title}");
    for (k, v) in rows {
        println!("  {k:<width$}  {v:>14}");
    }
}

/// Two counters shown on the progress line, e.g. sent and received.
#[derive(Debug, Default)]
pub struct Counters {
    /// Left counter (sent / connected).
    pub a: AtomicU64,
    /// Right counter (received).
    pub b: AtomicU64,
}

/// Prints `label_a N (R/s)  label_b N (R/s)` on stderr once a second until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the progress printer over `counters`.
    pub fn start(
        counters: Arc<Counters>,
        label_a: &'static str,
        label_b: &'static str,
    ) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let (mut last_a, mut last_b) = (0, 0);
            let mut last_t = start;
            loop {
                tick.tick().await;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let (a, b) = (
                    counters.a.load(Ordering::Relaxed),
                    counters.b.load(Ordering::Relaxed),
                );
                let now = Instant::now();
                let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
                eprintln!(
                    "[{:>4.0}s] {label_a} {a:>10} ({:>9.0}/s)  {label_b} {b:>10} ({:>9.0}/s)",
                    now.duration_since(start).as_secs_f64(),
                    (a - last_a) as f64 / dt,
                    (b - last_b) as f64 / dt,
                );
                (last_a, last_b, last_t) = (a, b, now);
            }
        });
        Progress {
            stop,
            task: Some(task),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert!((499..=501).contains(&l.p50), "{l:?}");
        assert!((989..=991).contains(&l.p99), "{l:?}");
        assert_eq!(l.max, 1000);
    }

    #[test]
    fn empty_histogram_gives_zeros_and_huge_values_clamp() {
        assert_eq!(Latency::of(&histogram()), Latency::default());
        let mut h = histogram();
        record(&mut h, u64::MAX);
        assert!(Latency::of(&h).max >= MAX_LATENCY_US);
    }
}
