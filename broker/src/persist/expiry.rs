//! Which vehicle hashes the writer extends the TTL of (`PEXPIRE`) with their next write.
//!
//! `HSET` keeps a key's TTL, so a hash needs `PEXPIRE` only on its first write and then often
//! enough that it outlives the vehicle's updates by `--state-ttl`. Sent with every write, it was
//! a third of the writer's commands (one of `HSET`, `PEXPIRE`, `XADD` per fix) for Redis to run
//! and for the broker to encode and read the reply of. Here a vehicle's TTL is extended at most
//! once per interval, 1 % of the TTL (1 s to 60 s): the hash then
//! expires between the TTL less two intervals and the TTL after the last update (the default
//! hour: 58 min 48 s to 60 min).
//!
//! Bounded by the vehicles written within two intervals: two generations of ids, the older
//! dropped at each interval's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hash::FastSet;

/// Shortest interval between two extensions of one hash.
const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest interval between two extensions of one hash.
const MAX_EVERY: Duration = Duration::from_secs(60);

/// The vehicles whose hash TTL was extended lately.
pub struct Expiry {
    /// The TTL, ms, as `PEXPIRE` takes it.
    ttl_ms: u64,
    every: Duration,
    /// Extended in this interval.
    recent: FastSet<Arc<str>>,
    /// Extended in the interval before.
    older: FastSet<Arc<str>>,
    /// When this interval began.
    since: Instant,
}

impl Expiry {
    /// For hashes whose TTL is `ttl`.
    pub fn new(ttl: Duration, now: Instant) -> Expiry {
        Expiry {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            every: (ttl / 100).clamp(MIN_EVERY, MAX_EVERY),
            recent: FastSet::default(),
            older: FastSet::default(),
            since: now,
        }
    }

    /// The TTL, ms.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Whether a write of `vehicle`'s hash at `now` also extends its TTL; if so, it is noted as
    /// extended.
    pub fn due(&mut self, vehicle: &Arc<str>, now: Instant) -> bool {
        let elapsed = now.duration_since(self.since);
        if elapsed >= 2 * self.every {
            // A whole interval without a write: both generations are stale.
            self.forget();
            self.since = now;
        } else if elapsed >= self.every {
            std::mem::swap(&mut self.recent, &mut self.older);
            self.recent.clear();
            self.since = now;
        }
        if self.recent.contains(vehicle) || self.older.contains(vehicle) {
            return false;
        }
        self.recent.insert(vehicle.clone());
        true
    }

    /// A write failed: what was noted may not have reached Redis, so every hash is extended
    /// with its next write.
    pub fn forget(&mut self) {
        self.recent.clear();
        self.older.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vehicle written every second with a one-hour TTL is extended on its first write and
    /// then once every 36 to 72 s; never more than two intervals apart.
    #[test]
    fn a_steady_vehicle_is_extended_once_per_interval_or_two() {
        let t0 = Instant::now();
        let mut expiry = Expiry::new(Duration::from_secs(3600), t0);
        assert_eq!(expiry.every, Duration::from_secs(36));
        let bus: Arc<str> = "bus-1".into();
        let mut extended = Vec::new();
        for s in 0..600 {
            if expiry.due(&bus, t0 + Duration::from_secs(s)) {
                extended.push(s);
            }
        }
        assert_eq!(extended[0], 0);
        for pair in extended.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((36..=72).contains(&gap), "{extended:?}");
        }
        assert!(extended.len() >= 600 / 72, "{extended:?}");
    }

    /// A vehicle back after a pause longer than an interval is extended at once, as is every
    /// vehicle after a failed write.
    #[test]
    fn a_pause_or_a_failed_write_extends_at_once() {
        let t0 = Instant::now();
        let mut expiry = Expiry::new(Duration::from_secs(100), t0);
        assert_eq!(expiry.every, MIN_EVERY);
        let bus: Arc<str> = "bus-1".into();
        assert!(expiry.due(&bus, t0));
        assert!(!expiry.due(&bus, t0 + Duration::from_millis(500)));
        assert!(expiry.due(&bus, t0 + Duration::from_secs(3)));
        assert!(!expiry.due(&bus, t0 + Duration::from_millis(3100)));
        expiry.forget();
        assert!(expiry.due(&bus, t0 + Duration::from_millis(3200)));
        let huge = Expiry::new(Duration::from_secs(86_400 * 30), t0);
        assert_eq!(huge.every, MAX_EVERY);
    }
}
