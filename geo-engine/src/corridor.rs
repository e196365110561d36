//! Route corridors and matching (docs/pipeline.md#match-the-route): a corridor is one route
//! geometry (a GTFS shape or a GeoJSON LineString) in local metres with cumulative distances and
//! its stops placed along it. Matching finds the nearest segment of the vehicle's route (or of any
//! route), giving the cross-track distance and the progress along the route.

use geo::{Coord, Line};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::local::{Local, LocalFrame, dist};

/// Which corridor and segment an R-tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegRef {
    /// Index into the network's corridors.
    pub corridor: u32,
    /// Segment `i` joins points `i` and `i + 1`.
    pub seg: u32,
}

/// An R-tree entry: a geo `Line` in local metres (geo 0.33 implements rstar 0.12's
/// `RTreeObject` and `PointDistance` for it) tagged with its corridor and segment.
pub type SegmentEntry = GeomWithData<Line<f64>, SegRef>;

/// A stop placed along a corridor.
#[derive(Debug, Clone, PartialEq)]
pub struct CorridorStop {
    /// Index into the network's stops.
    pub stop: usize,
    /// Distance from the corridor's start to the stop's projection, metres.
    pub progress_m: f64,
    /// The projection itself, local metres: where a vehicle on the route is nearest the stop.
    /// Feeds place stops 15–40 m off the drawn line, so arrivals are measured to this point.
    pub at: Local,
}

/// One route geometry.
#[derive(Debug, Clone)]
pub struct Corridor {
    /// Shape id (GTFS) or the route id (GeoJSON, one line per route).
    pub id: String,
    /// Index into the network's routes.
    pub route: usize,
    /// WGS84 vertices (x = lon, y = lat), for GeoJSON output.
    pub coords: Vec<Coord<f64>>,
    /// The same vertices in the network's local frame, metres.
    pub points: Vec<Local>,
    /// Distance along the corridor at each vertex, metres (`cum[0] == 0`).
    pub cum: Vec<f64>,
    /// Stops in travel order.
    pub stops: Vec<CorridorStop>,
    /// GTFS trips that run on this corridor (0 for GeoJSON).
    pub trips: usize,
}

/// Where a point lies relative to one corridor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    /// Index into the network's corridors.
    pub corridor: usize,
    /// Segment index.
    pub segment: usize,
    /// Cross-track distance, metres.
    pub off_route_m: f64,
    /// Distance along the corridor to the foot of the perpendicular, metres.
    pub progress_m: f64,
}

/// Consecutive vertices closer than this are one vertex, metres.
const SAME_VERTEX_M: f64 = 0.01;

/// A stop is placed on the first segment ahead within this of its nearest one, metres.
const STOP_PLACEMENT_SLACK_M: f64 = 25.0;

/// Shortest segment length divided by, metres: keeps a direction finite on a degenerate segment.
const MIN_SEGMENT_M: f64 = 1e-9;

/// Candidates [`match_point`] keeps on the stack for its fallback; more are found again by a
/// second R-tree query.
const KEPT_CANDIDATES: usize = 32;

impl Corridor {
    /// Builds a corridor from WGS84 vertices (x = lon, y = lat); repeated vertices are dropped.
    /// `None` when fewer than two distinct vertices remain.
    pub fn new(
        id: String,
        route: usize,
        coords: &[Coord<f64>],
        frame: &LocalFrame,
    ) -> Option<Corridor> {
        let mut kept: Vec<Coord<f64>> = Vec::with_capacity(coords.len());
        let mut points: Vec<Local> = Vec::with_capacity(coords.len());
        let mut cum = Vec::with_capacity(coords.len());
        for &c in coords {
            let p = frame.to_local(c.into());
            match points.last() {
                Some(&q) if dist(p, q) < SAME_VERTEX_M => continue,
                Some(&q) => cum.push(cum.last().copied().unwrap_or(0.0) + dist(p, q)),
                None => cum.push(0.0),
            }
            points.push(p);
            kept.push(c);
        }
        (points.len() >= 2).then_some(Corridor {
            id,
            route,
            coords: kept,
            points,
            cum,
            stops: Vec::new(),
            trips: 0,
        })
    }

    /// Total length, metres.
    pub fn length_m(&self) -> f64 {
        self.cum.last().copied().unwrap_or(0.0)
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.points.len().saturating_sub(1)
    }

    /// Projects `p` onto segment `seg`: `(cross-track distance, progress)`, metres.
    pub fn project_on(&self, seg: usize, p: Local) -> (f64, f64) {
        let (Some(&a), Some(&b)) = (self.points.get(seg), self.points.get(seg + 1)) else {
            return (f64::INFINITY, 0.0);
        };
        let (dx, dy) = (b.x() - a.x(), b.y() - a.y());
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p.x() - a.x()) * dx + (p.y() - a.y()) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let foot = Local::new(a.x() + t * dx, a.y() + t * dy);
        (dist(p, foot), self.cum[seg] + t * len2.sqrt())
    }

    /// The point at `progress` metres along the corridor and the unit direction of travel there
    /// (east, north).
    pub fn point_at(&self, progress: f64) -> (Local, [f64; 2]) {
        let progress = progress.clamp(0.0, self.length_m());
        let seg = match self.cum.binary_search_by(|c| c.total_cmp(&progress)) {
            Ok(i) => i.min(self.segments().saturating_sub(1)),
            Err(i) => i.saturating_sub(1).min(self.segments().saturating_sub(1)),
        };
        let (a, b) = (self.points[seg], self.points[seg + 1]);
        let len = dist(a, b).max(MIN_SEGMENT_M);
        let t = ((progress - self.cum[seg]) / len).clamp(0.0, 1.0);
        let dir = [(b.x() - a.x()) / len, (b.y() - a.y()) / len];
        (
            Local::new(a.x() + t * (b.x() - a.x()), a.y() + t * (b.y() - a.y())),
            dir,
        )
    }

    /// Places a point that is known to come after `from` metres (stops in order): among the
    /// segments ahead, the first one within [`STOP_PLACEMENT_SLACK_M`] of the closest, so a loop
    /// that passes near the stop again later does not capture it.
    pub fn place_after(&self, p: Local, from: f64) -> (f64, f64) {
        let cands: Vec<(f64, f64)> = (0..self.segments())
            .filter(|&s| self.cum[s + 1] >= from)
            .map(|s| self.project_on(s, p))
            .map(|(d, prog)| (d, prog.max(from)))
            .collect();
        let best = cands.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
        cands
            .into_iter()
            .find(|c| c.0 <= best + STOP_PLACEMENT_SLACK_M)
            .unwrap_or((f64::INFINITY, from))
    }

    /// R-tree entries of this corridor's segments, tagged with corridor index `ci`.
    pub fn entries(&self, ci: usize) -> Vec<SegmentEntry> {
        self.points
            .windows(2)
            .enumerate()
            .map(|(s, w)| {
                GeomWithData::new(
                    Line::new(w[0].0, w[1].0),
                    SegRef {
                        corridor: ci as u32,
                        seg: s as u32,
                    },
                )
            })
            .collect()
    }
}

/// The matching preference: the corridor matched last time and the progress reached on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Previous {
    /// Corridor index.
    pub corridor: usize,
    /// Progress reached, metres.
    pub progress_m: f64,
    /// How far ahead of `progress_m` the vehicle may be by now, metres (from its speed and the
    /// time since; at least [`MIN_LOOKAHEAD_M`]).
    pub lookahead_m: f64,
}

/// Progress may go back this much (GPS noise, smoothing lag) and still count as the same pass.
pub const BACKTRACK_TOLERANCE_M: f64 = 30.0;

/// Candidates this much farther than the nearest still count as the same place, metres.
pub const SAME_PLACE_M: f64 = 15.0;

/// The least look-ahead, metres. A route passing the same place twice less than this apart
/// (along the route) is ambiguous.
pub const MIN_LOOKAHEAD_M: f64 = 60.0;

/// Matches `p` against the segments in `tree` (one route's, or every route's).
///
/// Candidates are the segments within `radius_of(corridor)` of `p`. With a previous match, the
/// nearest candidate on the same corridor whose progress lies in
/// `[prev - BACKTRACK_TOLERANCE_M, prev + lookahead]` wins: a route that uses the same street
/// twice (out and back, a loop) is followed pass by pass instead of jumping to the other pass.
/// Failing that (rejoining after a detour), the first pass ahead of the previous match wins.
/// Without either (first fix, new trip, next corridor), the candidate with the least progress
/// among those within [`SAME_PLACE_M`] of the nearest wins. When nothing is within the corridor, the
/// nearest segment, with its distance.
pub fn match_point(
    tree: &RTree<SegmentEntry>,
    corridors: &[Corridor],
    p: Local,
    query_radius: f64,
    radius_of: &dyn Fn(&Corridor) -> f64,
    prev: Option<Previous>,
) -> Option<Projection> {
    let q = geo::Point::from(p);
    // Segments within their corridor's width of `p`, as projections.
    let candidates = || {
        tree.locate_within_distance(q, query_radius * query_radius)
            .filter_map(|e| {
                let ci = e.data.corridor as usize;
                let c = corridors.get(ci)?;
                let seg = e.data.seg as usize;
                let (d, prog) = c.project_on(seg, p);
                (d <= radius_of(c)).then_some(Projection {
                    corridor: ci,
                    segment: seg,
                    off_route_m: d,
                    progress_m: prog,
                })
            })
    };
    let mut nearest: Option<Projection> = None;
    let mut local: Option<Projection> = None;
    let mut ahead: Option<Projection> = None;
    // The first candidates, kept on the stack for the fallback below.
    let blank = Projection {
        corridor: 0,
        segment: 0,
        off_route_m: f64::INFINITY,
        progress_m: 0.0,
    };
    let mut kept = [blank; KEPT_CANDIDATES];
    let mut count = 0usize;
    for cand in candidates() {
        if let Some(slot) = kept.get_mut(count) {
            *slot = cand;
        }
        count += 1;
        let (d, prog) = (cand.off_route_m, cand.progress_m);
        if nearest.is_none_or(|n| d < n.off_route_m) {
            nearest = Some(cand);
        }
        if let Some(prev) = prev
            .filter(|p| p.corridor == cand.corridor && prog >= p.progress_m - BACKTRACK_TOLERANCE_M)
        {
            if prog <= prev.progress_m + prev.lookahead_m.max(MIN_LOOKAHEAD_M)
                && local.is_none_or(|f| d < f.off_route_m)
            {
                local = Some(cand);
            }
            if ahead.is_none_or(|a| prog < a.progress_m) {
                ahead = Some(cand);
            }
        }
    }
    if let Some(f) = local.or(ahead) {
        return Some(f);
    }
    if let Some(n) = nearest {
        // No usable previous match: the earliest pass among those about as near (a vehicle at a
        // terminus starts the corridor that begins there rather than the one that ends there; a
        // route passing here twice is taken at its first pass).
        let near = |c: &Projection| c.off_route_m <= n.off_route_m + SAME_PLACE_M;
        let earliest = if count <= kept.len() {
            kept[..count]
                .iter()
                .copied()
                .filter(near)
                .min_by(|a, b| a.progress_m.total_cmp(&b.progress_m))
        } else {
            candidates()
                .filter(near)
                .min_by(|a, b| a.progress_m.total_cmp(&b.progress_m))
        };
        return earliest.or(Some(n));
    }
    // Off every corridor: report the distance to the nearest segment.
    let e = tree.nearest_neighbor(&q)?;
    let ci = e.data.corridor as usize;
    let (d, prog) = corridors.get(ci)?.project_on(e.data.seg as usize, p);
    Some(Projection {
        corridor: ci,
        segment: e.data.seg as usize,
        off_route_m: d,
        progress_m: prog,
    })
}

/// The same answer as [`match_point`] without the R-tree nor the preference: a scan over every
/// segment of `corridors` (the baseline of the bench and a cross-check in tests).
pub fn nearest_linear(corridors: &[Corridor], p: Local) -> Option<Projection> {
    let mut best: Option<Projection> = None;
    for (ci, c) in corridors.iter().enumerate() {
        for seg in 0..c.segments() {
            let (d, prog) = c.project_on(seg, p);
            if best.is_none_or(|b| d < b.off_route_m) {
                best = Some(Projection {
                    corridor: ci,
                    segment: seg,
                    off_route_m: d,
                    progress_m: prog,
                });
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> LocalFrame {
        LocalFrame::new(geo::Point::new(145.77, -16.92))
    }

    /// An L-shaped corridor: 1 km east, then 1 km north.
    fn l_shape() -> Corridor {
        let f = frame();
        let pts = [[0.0, 0.0], [1000.0, 0.0], [1000.0, 1000.0]];
        let coords: Vec<Coord<f64>> = pts
            .iter()
            .map(|&[x, y]| f.to_geo(Local::new(x, y)).0)
            .collect();
        Corridor::new("L".into(), 0, &coords, &f).unwrap()
    }

    #[test]
    fn projection_gives_cross_track_and_progress() {
        let c = l_shape();
        assert!((c.length_m() - 2000.0).abs() < 0.01);
        let tree = RTree::bulk_load(c.entries(0));
        let cs = [c];
        let m = match_point(&tree, &cs, Local::new(500.0, 20.0), 50.0, &|_| 50.0, None).unwrap();
        assert!((m.off_route_m - 20.0).abs() < 0.01 && (m.progress_m - 500.0).abs() < 0.01);
        let m = match_point(&tree, &cs, Local::new(1030.0, 400.0), 50.0, &|_| 50.0, None).unwrap();
        assert!((m.off_route_m - 30.0).abs() < 0.01 && (m.progress_m - 1400.0).abs() < 0.01);
        // Far away: still the nearest segment, with its distance.
        let m = match_point(&tree, &cs, Local::new(500.0, -300.0), 50.0, &|_| 50.0, None).unwrap();
        assert!((m.off_route_m - 300.0).abs() < 0.01);
        let lin = nearest_linear(&cs, Local::new(500.0, -300.0)).unwrap();
        assert_eq!((lin.segment, lin.corridor), (m.segment, m.corridor));
    }

    #[test]
    fn out_and_back_follows_the_current_pass() {
        let f = frame();
        let pts = [[0.0, 0.0], [1000.0, 0.0], [1000.0, 10.0], [0.0, 10.0]];
        let coords: Vec<Coord<f64>> = pts
            .iter()
            .map(|&[x, y]| f.to_geo(Local::new(x, y)).0)
            .collect();
        let c = Corridor::new("O".into(), 0, &coords, &f).unwrap();
        let tree = RTree::bulk_load(c.entries(0));
        let cs = [c];
        let prev = Some(Previous {
            corridor: 0,
            progress_m: 1200.0,
            lookahead_m: 500.0,
        });
        let m = match_point(&tree, &cs, Local::new(600.0, 4.0), 50.0, &|_| 50.0, prev).unwrap();
        assert!(
            (m.progress_m - 1410.0).abs() < 0.5,
            "stays on the way back: {}",
            m.progress_m
        );
        let prev = Some(Previous {
            corridor: 0,
            progress_m: 500.0,
            lookahead_m: 500.0,
        });
        let m = match_point(&tree, &cs, Local::new(600.0, 6.0), 50.0, &|_| 50.0, prev).unwrap();
        assert!(
            (m.progress_m - 600.0).abs() < 0.5,
            "stays on the way out: {}",
            m.progress_m
        );
    }

    #[test]
    fn point_at_walks_the_line() {
        let c = l_shape();
        let (p, dir) = c.point_at(1500.0);
        assert!(dist(p, Local::new(1000.0, 500.0)) < 1e-6 && (dir[1] - 1.0).abs() < 1e-9);
        let (p, _) = c.point_at(5000.0);
        assert!(dist(p, Local::new(1000.0, 1000.0)) < 1e-6);
    }

    fn corridor(id: &str, pts: &[[f64; 2]]) -> Corridor {
        let f = frame();
        let coords: Vec<Coord<f64>> = pts
            .iter()
            .map(|&[x, y]| f.to_geo(Local::new(x, y)).0)
            .collect();
        Corridor::new(id.into(), 0, &coords, &f).unwrap()
    }

    #[test]
    fn at_a_terminus_the_corridor_that_starts_there_wins() {
        let a = corridor("A", &[[-1000.0, 0.0], [0.0, 0.0]]);
        let b = corridor("B", &[[0.0, 3.0], [0.0, 1000.0]]);
        let mut entries = a.entries(0);
        entries.extend(b.entries(1));
        let tree = RTree::bulk_load(entries);
        let cs = [a, b];
        let m = match_point(&tree, &cs, Local::new(1.0, 1.0), 50.0, &|_| 50.0, None).unwrap();
        assert_eq!((m.corridor, m.progress_m.round()), (1, 0.0));
    }

    #[test]
    fn a_short_loop_is_not_skipped() {
        // 100 m east, a 20 m wide U-turn, 100 m back west 20 m north of the way out.
        let c = corridor("U", &[[0.0, 0.0], [100.0, 0.0], [100.0, 20.0], [0.0, 20.0]]);
        let tree = RTree::bulk_load(c.entries(0));
        let cs = [c];
        // On the way out at 50 m, having been at 40 m a second ago at 10 m/s: the way back
        // (progress ~170 m, 20 m off) is beyond the look-ahead.
        let prev = Some(Previous {
            corridor: 0,
            progress_m: 40.0,
            lookahead_m: 60.0,
        });
        let m = match_point(&tree, &cs, Local::new(50.0, 11.0), 50.0, &|_| 50.0, prev).unwrap();
        assert!((m.progress_m - 50.0).abs() < 0.5, "{}", m.progress_m);
    }
}
