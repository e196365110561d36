//! Stage 2, de-duplication (docs/pipeline.md#de-duplicate): a fix whose `ts` is not newer than the
//! last accepted one is a duplicate (a retransmission, or a batch overlapping what was already
//! sent). When both carry a `seq`, a `seq` not newer than the last one within [`SEQ_WINDOW_MS`] is
//! a duplicate as well; past that window a smaller `seq` is taken as a device restart.

use serde::{Deserialize, Serialize};

use crate::fix::Fix;

/// How long a `seq` stays authoritative, ms.
pub const SEQ_WINDOW_MS: i64 = 60_000;

/// The last accepted `ts` and `seq` of one vehicle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// Device time of the last accepted fix.
    last_ts: Option<i64>,
    /// Counter of the last accepted fix, when it had one.
    last_seq: Option<u64>,
}

impl Dedup {
    /// Whether `fix` repeats or predates what was already accepted.
    pub fn is_duplicate(&self, fix: &Fix) -> bool {
        let Some(last_ts) = self.last_ts else {
            return false;
        };
        if fix.ts <= last_ts {
            return true;
        }
        match (fix.seq, self.last_seq) {
            (Some(seq), Some(last)) => seq <= last && fix.ts - last_ts < SEQ_WINDOW_MS,
            _ => false,
        }
    }

    /// Records `fix` as accepted.
    pub fn accept(&mut self, fix: &Fix) {
        self.last_ts = Some(fix.ts);
        self.last_seq = fix.seq;
    }

    /// Runs a whole stream through a fresh filter and returns what it lets through.
    pub fn filter_stream(fixes: &[Fix]) -> Vec<Fix> {
        let mut d = Dedup::default();
        let mut out = Vec::new();
        for f in fixes {
            if !d.is_duplicate(f) {
                d.accept(f);
                out.push(f.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fix(ts: i64, seq: Option<u64>) -> Fix {
        Fix {
            seq,
            ..Fix::new(geo::Point::new(1.0, 1.0), ts)
        }
    }

    #[test]
    fn repeated_and_older_fixes_are_duplicates() {
        let mut d = Dedup::default();
        assert!(!d.is_duplicate(&fix(100, Some(1))));
        d.accept(&fix(100, Some(1)));
        assert!(d.is_duplicate(&fix(100, Some(1))));
        assert!(d.is_duplicate(&fix(99, None)));
        assert!(
            d.is_duplicate(&fix(200, Some(1))),
            "same seq, newer ts: a replay"
        );
        assert!(!d.is_duplicate(&fix(200, Some(2))));
        assert!(
            !d.is_duplicate(&fix(100 + SEQ_WINDOW_MS, Some(0))),
            "restart after the window"
        );
    }

    proptest! {
        #[test]
        fn dedup_is_idempotent(raw in prop::collection::vec((0i64..50, prop::option::of(0u64..20)), 0..60)) {
            let fixes: Vec<Fix> = raw.into_iter().map(|(ts, seq)| fix(ts * 1000, seq)).collect();
            let once = Dedup::filter_stream(&fixes);
            let twice = Dedup::filter_stream(&once);
            prop_assert_eq!(&once, &twice);
            // Whatever passes is strictly increasing in ts, and feeding it again passes nothing.
            prop_assert!(once.windows(2).all(|w| w[0].ts < w[1].ts));
            let mut d = Dedup::default();
            for f in &once { d.accept(f); }
            prop_assert!(once.iter().all(|f| d.is_duplicate(f)));
        }
    }
}
