//! The coalescing slots of one per-vehicle subscription of a client, by the hub's vehicle index
//! ([`VehicleIdx`]): a hash map while the subscription has slots for few of the vehicles, a
//! vector indexed by vehicle once it has them for at least one in [`DENSE_FRACTION`] of the
//! vehicles up to the highest it has seen.
//!
//! Why: the push path looks a slot up once per offered state and again when the writer takes it,
//! for every client of the vehicle. With a fleet-wide or route subscription of thousands of
//! vehicles, a hash map lookup there was two cache misses (the control bytes, then the bucket)
//! and the largest cost of a broker with 1,000 watchers (`perf`, session 20: `offer_state` and
//! `take_due` together a third of the broker's CPU). Indexed, it is one.
//!
//! # Bounds
//! A sparse set holds one entry per vehicle with something pending, scheduled or sent less than
//! an interval ago (the sweep, every 5 s, drops the rest); a dense one holds `highest index + 1`
//! slots of 32 bytes, at most [`DENSE_FRACTION`] times the live ones when it became dense, and
//! goes back to a map when a sweep leaves fewer live than that. Vehicle indexes are below
//! `--max-vehicles`, so one subscription's slots take at most 32 bytes times that bound. Dense
//! sets cost memory at low density: with 1,000 route and fleet watchers of 9,900 vehicles the
//! broker's peak RSS grew by 5 % (session 20, bench/RESULTS.md).

use std::collections::HashMap;

use std::sync::Arc;
use tokio::time::Instant;

use crate::fleet::Prepared;

/// A vehicle as the hub numbers it: from 0 in order of arrival, for the hub's life (the fleet
/// never forgets a vehicle).
pub type VehicleIdx = u32;

/// Which entry of a client's timer heap is a slot's current one.
pub type TimerSeq = std::num::NonZeroU64;

/// A set turns dense at one live slot per this many vehicle indexes (and back below it).
const DENSE_FRACTION: usize = 8;

/// Smallest set that turns dense: below it a map is small enough to stay in cache.
const DENSE_MIN: usize = 64;

/// The coalescing slot of one (subscription, vehicle).
#[derive(Default)]
pub struct Slot {
    /// The latest state not yet sent.
    pub pending: Option<Arc<Prepared>>,
    pub last_sent: Option<Instant>,
    /// The `seq` of this slot's entry in the timer heap, if scheduled (non-zero, so that a slot
    /// is 32 bytes: a dense set holds one per vehicle index).
    pub timer: Option<TimerSeq>,
}

impl Slot {
    /// Whether the slot still matters at `now`: something pending or scheduled, or sent less
    /// than `interval` ago (it holds the next update back).
    fn live(&self, now: Instant, interval: std::time::Duration) -> bool {
        self.pending.is_some()
            || self.timer.is_some()
            || self
                .last_sent
                .is_some_and(|t| now.duration_since(t) < interval)
    }

    fn is_empty(&self) -> bool {
        self.pending.is_none() && self.timer.is_none() && self.last_sent.is_none()
    }
}

/// Hashes a vehicle index with foldhash, seeded per map (module doc of `client`).
type IdxMap<V> = HashMap<VehicleIdx, V, foldhash::fast::RandomState>;

/// One subscription's slots (module doc).
pub enum Slots {
    Sparse {
        map: IdxMap<Slot>,
        highest: VehicleIdx,
    },
    Dense(Vec<Slot>),
}

impl Default for Slots {
    fn default() -> Self {
        Slots::Sparse {
            map: IdxMap::default(),
            highest: 0,
        }
    }
}

impl Slots {
    pub fn get_mut(&mut self, v: VehicleIdx) -> Option<&mut Slot> {
        match self {
            Slots::Sparse { map, .. } => map.get_mut(&v),
            Slots::Dense(slots) => slots.get_mut(v as usize),
        }
    }

    /// The slot of `v`, made if there is none.
    pub fn entry(&mut self, v: VehicleIdx) -> &mut Slot {
        if let Slots::Sparse { map, highest } = self {
            *highest = (*highest).max(v);
            let dense = map.len() >= DENSE_MIN
                && !map.contains_key(&v)
                && (map.len() + 1) * DENSE_FRACTION > *highest as usize;
            if dense {
                let mut slots = Vec::new();
                slots.resize_with(*highest as usize + 1, Slot::default);
                for (i, slot) in map.drain() {
                    slots[i as usize] = slot;
                }
                *self = Slots::Dense(slots);
            }
        }
        match self {
            Slots::Sparse { map, .. } => map.entry(v).or_default(),
            Slots::Dense(slots) => {
                let i = v as usize;
                if i >= slots.len() {
                    slots.resize_with(i + 1, Slot::default);
                }
                &mut slots[i]
            }
        }
    }

    /// Slots with a pending state not scheduled (parked until the snapshot went out).
    pub fn parked(&self) -> Vec<VehicleIdx> {
        let parked = |s: &Slot| s.pending.is_some() && s.timer.is_none();
        match self {
            Slots::Sparse { map, .. } => map
                .iter()
                .filter(|(_, s)| parked(s))
                .map(|(&v, _)| v)
                .collect(),
            Slots::Dense(slots) => (0..)
                .zip(slots)
                .filter(|(_, s)| parked(s))
                .map(|(v, _)| v)
                .collect(),
        }
    }

    /// States waiting to be sent.
    pub fn pending(&self) -> usize {
        match self {
            Slots::Sparse { map, .. } => map.values().filter(|s| s.pending.is_some()).count(),
            Slots::Dense(slots) => slots.iter().filter(|s| s.pending.is_some()).count(),
        }
    }

    /// Slots held (in use, for a dense set).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            Slots::Sparse { map, .. } => map.len(),
            Slots::Dense(slots) => slots.iter().filter(|s| !s.is_empty()).count(),
        }
    }

    /// Drops the slots no longer live at `now`; a dense set with too few left becomes a map.
    pub fn sweep(&mut self, now: Instant, interval: std::time::Duration) {
        match self {
            Slots::Sparse { map, highest } => {
                map.retain(|_, s| s.live(now, interval));
                *highest = map.keys().copied().max().unwrap_or(0);
            }
            Slots::Dense(slots) => {
                let mut live = 0;
                for s in slots.iter_mut() {
                    if s.live(now, interval) {
                        live += 1;
                    } else {
                        *s = Slot::default();
                    }
                }
                if live * DENSE_FRACTION < slots.len() {
                    let mut map = IdxMap::default();
                    for (v, s) in (0..).zip(slots.drain(..)) {
                        if !s.is_empty() {
                            map.insert(v, s);
                        }
                    }
                    let highest = map.keys().copied().max().unwrap_or(0);
                    *self = Slots::Sparse { map, highest };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_set_turns_dense_and_back_keeping_its_slots() {
        let mut s = Slots::default();
        let now = Instant::now();
        for v in 0..DENSE_MIN as u32 {
            s.entry(v * 2).last_sent = Some(now);
        }
        assert!(matches!(s, Slots::Sparse { .. }), "below the minimum");
        s.entry(200).last_sent = Some(now);
        assert!(matches!(s, Slots::Dense(_)), "65 of 201 indexes");
        assert_eq!(s.len(), DENSE_MIN + 1);
        assert!(s.get_mut(2).is_some_and(|x| x.last_sent == Some(now)));
        assert!(s.get_mut(3).is_some_and(|x| x.last_sent.is_none()));
        assert!(s.get_mut(500).is_none());
        s.entry(7).timer = TimerSeq::new(1);
        // Past the interval only the scheduled slot is live: back to a map holding it alone.
        tokio::time::advance(Duration::from_secs(2)).await;
        s.sweep(Instant::now(), Duration::from_secs(1));
        assert!(matches!(s, Slots::Sparse { .. }));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get_mut(7).and_then(|x| x.timer), TimerSeq::new(1));
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn a_sparse_set_stays_a_map_for_scattered_vehicles() {
        let mut s = Slots::default();
        for v in 0..1000u32 {
            s.entry(v * 100);
        }
        assert!(matches!(s, Slots::Sparse { .. }));
        assert_eq!(s.len(), 1000);
    }
}
