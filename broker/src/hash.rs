//! The hasher of the maps every location update looks up (trackers, live vehicles, trips, the
//! topic and retained trees): foldhash, seeded randomly per map, instead of std's SipHash.
//!
//! Why: SipHash was ~3,400 of the ~54,000 instructions per update (callgrind, issue 15).
//! The keys (vehicle ids, topic levels) are chosen by clients, so the hasher must be seeded:
//! foldhash's `RandomState` is seeded randomly (per process, varied per map), like hashbrown's
//! default, so colliding ids cannot be precomputed offline.

use std::collections::{HashMap, HashSet};

/// The seeded hasher builder.
pub type FastState = foldhash::fast::RandomState;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// A `HashSet` with [`FastState`].
pub type FastSet<T> = HashSet<T, FastState>;
