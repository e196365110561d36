//! Where a vehicle is along its trip's corridor. The schedule tracks progress on the trip's own
//! corridor rather than on whichever corridor the route matcher chose: a route's shapes often
//! overlap (variants, short turns), and delay only means something along the trip's shape.

use crate::corridor::Corridor;
use crate::local::Local;

/// Behind the last progress, a fix may still project this far back (GPS noise), metres.
const BACK_M: f64 = 60.0;
/// Ahead of the last progress, the first search covers this far (over a minute at 15 m/s);
/// a vehicle not found there is searched along the rest of the corridor, metres.
const AHEAD_M: f64 = 1_000.0;

/// `(cross-track distance, progress)` of local point `p` on `c`: the nearest point within
/// `[last - 60 m, last + 1 km]` when a last progress is known and the fix is within `width_m`
/// there, else the nearest point from `last - 100 m` on (the whole corridor without `last`).
pub fn locate(c: &Corridor, p: Local, last: Option<f64>, width_m: f64) -> Option<(f64, f64)> {
    let n = c.segments();
    if n == 0 {
        return None;
    }
    let seg_of = |x: f64| {
        c.cum
            .partition_point(|&v| v <= x)
            .saturating_sub(1)
            .min(n - 1)
    };
    let nearest = |from: usize, to: usize| {
        (from..=to)
            .map(|s| c.project_on(s, p))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    match last {
        Some(l) => {
            let from = seg_of(l - BACK_M);
            let near = nearest(from, seg_of(l + AHEAD_M));
            match near {
                Some(hit) if hit.0 <= width_m => Some(hit),
                _ => nearest(from, n - 1),
            }
        }
        None => nearest(0, n - 1),
    }
}
