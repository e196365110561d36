//! The record of what the drivers sent, shared with the watchers: per vehicle, the send time of
//! each recent fix keyed by its `ts`, the last `ts` sent and the newest `ts` any watcher saw.
//!
//! Latency is matched exactly: a processed state carries the fix's `ts` (device time, ms), and
//! each vehicle's `ts` values are strictly increasing, so `(vehicle, ts)` names one send, whose
//! monotonic send time (ns since the run's start instant) is kept here. A vehicle is **lost**
//! when the last fix it sent never produced a state at any watcher that covers it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Sends remembered per vehicle; older ones are forgotten (a state that late is not timed).
const KEEP: usize = 64;

/// What one vehicle sent and what came back.
#[derive(Debug, Default)]
struct Vehicle {
    /// `(ts, sent_ns)` of the most recent sends, oldest first.
    sends: Mutex<VecDeque<(i64, u64)>>,
    /// `ts` of the last fix sent; 0 before the first.
    last_sent: AtomicI64,
    /// Newest `ts` seen in a state by any watcher.
    last_seen: AtomicI64,
    /// Some watcher covers this vehicle (its route, or every vehicle over MQTT).
    watched: AtomicBool,
}

/// Sends and receipts of every vehicle, indexed by driver number.
#[derive(Debug)]
pub struct Ledger {
    vehicles: Vec<Vehicle>,
}

impl Ledger {
    /// A ledger for `n` vehicles.
    pub fn new(n: usize) -> Ledger {
        Ledger {
            vehicles: (0..n).map(|_| Vehicle::default()).collect(),
        }
    }

    /// Records that vehicle `i` sent the fix `ts` at `sent_ns`.
    pub fn sent(&self, i: usize, ts: i64, sent_ns: u64) {
        let Some(v) = self.vehicles.get(i) else {
            return;
        };
        if let Ok(mut sends) = v.sends.lock() {
            if sends.len() == KEEP {
                sends.pop_front();
            }
            sends.push_back((ts, sent_ns));
        }
        v.last_sent.store(ts, Ordering::Relaxed);
    }

    /// Marks vehicle `i` as covered by some watcher.
    pub fn watch(&self, i: usize) {
        if let Some(v) = self.vehicles.get(i) {
            v.watched.store(true, Ordering::Relaxed);
        }
    }

    /// Records a state of vehicle `i` for fix `ts` received at `now_ns`; returns the latency in
    /// nanoseconds if the send is still remembered.
    pub fn received(&self, i: usize, ts: i64, now_ns: u64) -> Option<u64> {
        let v = self.vehicles.get(i)?;
        v.last_seen.fetch_max(ts, Ordering::Relaxed);
        let sends = v.sends.lock().ok()?;
        // From the newest: a state is almost always of one of the last fixes sent.
        let (_, sent_ns) = sends
            .iter()
            .rev()
            .find(|&&(t, _)| t <= ts)
            .filter(|&&(t, _)| t == ts)?;
        Some(now_ns.saturating_sub(*sent_ns))
    }

    /// Watched vehicles whose last sent fix never showed up in a state.
    pub fn lost(&self) -> u64 {
        self.vehicles
            .iter()
            .filter(|v| {
                let sent = v.last_sent.load(Ordering::Relaxed);
                v.watched.load(Ordering::Relaxed)
                    && sent > 0
                    && v.last_seen.load(Ordering::Relaxed) < sent
            })
            .count() as u64
    }

    /// Vehicles covered by some watcher.
    pub fn watched(&self) -> u64 {
        self.vehicles
            .iter()
            .filter(|v| v.watched.load(Ordering::Relaxed))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_matches_the_exact_send_and_loss_is_the_last_fix() {
        let l = Ledger::new(2);
        l.watch(0);
        l.watch(1);
        l.sent(0, 1000, 5_000);
        l.sent(0, 1500, 9_000);
        l.sent(1, 1000, 6_000);
        assert_eq!(l.received(0, 1000, 7_000), Some(2_000));
        assert_eq!(l.received(0, 1200, 7_000), None);
        assert_eq!(l.received(7, 1000, 7_000), None);
        // Vehicle 0's last fix (1500) has not come back, vehicle 1's has.
        assert_eq!(l.received(1, 1000, 8_000), Some(2_000));
        assert_eq!(l.lost(), 1);
        l.received(0, 1500, 10_000);
        assert_eq!(l.lost(), 0);
    }

    #[test]
    fn unwatched_vehicles_are_not_lost_and_old_sends_are_forgotten() {
        let l = Ledger::new(1);
        for k in 0..(KEEP as i64 + 10) {
            l.sent(0, 1000 + k, k as u64);
        }
        assert_eq!(l.lost(), 0);
        assert_eq!(l.received(0, 1000, 100), None);
        assert!(l.received(0, 1000 + KEEP as i64 + 9, 100).is_some());
    }
}
