//! Maps keyed by the router's own session ids. The ids are handed out by the router in
//! sequence, never chosen by a client, so they need no DoS-resistant hash: a multiply
//! spreads them over the table, at a fraction of SipHash's cost on the routing path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::link::SessionId;

/// A `HashMap` from session id.
pub type IdMap<V> = HashMap<SessionId, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one `u64`.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; anything else still gets a deterministic hash.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_low_bits() {
        // hashbrown picks the bucket from the low bits: a bijection there means no clustering.
        let mut seen = std::collections::HashSet::new();
        for id in 0..1024u64 {
            let mut h = IdHasher::default();
            h.write_u64(id);
            seen.insert(h.finish() & 1023);
        }
        assert_eq!(seen.len(), 1024);
    }
}
