//! The route network: routes, their corridors (geometries) and stops, geofences, and the R-trees
//! over every corridor's segments. Built once by a loader (`geojson`, `gtfs`), then shared
//! read-only (`Arc<Network>`) by every vehicle's tracker.

use std::collections::HashMap;
use std::sync::Arc;

use geo::{BoundingRect, Contains, Coord, Intersects, MultiPolygon, Point, Rect};
use rstar::RTree;

use crate::corridor::{Corridor, CorridorStop, Previous, Projection, SegmentEntry, match_point};
use crate::error::LoadError;
use crate::local::{Local, LocalFrame};

/// A route: what vehicles name in their `route` field.
#[derive(Debug, Clone)]
pub struct Route {
    /// `route_id` (shared: every state matched to the route names it).
    pub id: Arc<str>,
    /// Display name.
    pub name: String,
    /// Corridor half-width, metres; `None` uses the pipeline default.
    pub corridor_m: Option<f64>,
    /// Indices of this route's corridors (one per shape / LineString).
    pub corridors: Vec<usize>,
}

/// A stop.
#[derive(Debug, Clone)]
pub struct Stop {
    /// `stop_id` (shared, as the name: every state's `next_stop` names them).
    pub id: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// WGS84 position (x = lon, y = lat, degrees).
    pub position: Point<f64>,
    /// Position in the network's local frame, metres.
    pub local: Local,
}

/// A polygon that raises `geofence_enter` / `geofence_exit`.
#[derive(Debug, Clone)]
pub struct Geofence {
    /// `geofence_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// WGS84 (x = lon, y = lat, degrees).
    pub area: MultiPolygon<f64>,
    /// Bounding box of `area`, for a cheap first test.
    bbox: Option<Rect<f64>>,
}

impl Geofence {
    /// A geofence over `area`.
    pub fn new(id: String, name: String, area: MultiPolygon<f64>) -> Geofence {
        let bbox = area.bounding_rect();
        Geofence {
            id,
            name,
            area,
            bbox,
        }
    }

    /// Whether `p` (x = lon, y = lat) is inside.
    pub fn contains(&self, p: Point<f64>) -> bool {
        match self.bbox {
            Some(b) if b.intersects(&p) => self.area.contains(&p),
            _ => false,
        }
    }
}

/// Counts for `fleetmq routes check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Distinct routes.
    pub routes: usize,
    /// Corridors (GTFS shapes or GeoJSON lines).
    pub corridors: usize,
    /// Distinct stops.
    pub stops: usize,
    /// Geofences.
    pub geofences: usize,
    /// Segments in the R-tree.
    pub segments: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} routes ({} corridors, {} segments), {} stops, {} geofences",
            self.routes, self.corridors, self.segments, self.stops, self.geofences
        )
    }
}

/// Route, stop and geofence input common to the loaders.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawNetwork {
    pub routes: Vec<RawRoute>,
    pub stops: Vec<RawStop>,
    pub geofences: Vec<Geofence>,
    /// GTFS `trip_id` → (route id, shape id).
    pub trips: Vec<(String, String, String)>,
    /// Per-route thresholds (GeoJSON route properties).
    pub thresholds: HashMap<String, crate::thresholds::RouteThresholds>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawRoute {
    pub id: String,
    pub name: String,
    pub corridor_m: Option<f64>,
    pub shapes: Vec<RawShape>,
    /// Stops that apply to every shape of the route, in order.
    pub stops: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawShape {
    pub id: String,
    /// WGS84 vertices (x = lon, y = lat).
    pub coords: Vec<Coord<f64>>,
    /// Stops of this shape only, in order (GTFS, or GeoJSON stops with a `shape_id`).
    pub stops: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawStop {
    pub id: String,
    pub name: String,
    pub position: Point<f64>,
}

/// Routes, stops, geofences and the segment R-trees. `Send + Sync`; share it with `Arc`.
#[derive(Debug, Clone)]
pub struct Network {
    /// Local frame every corridor and stop is projected into.
    pub(crate) frame: LocalFrame,
    pub(crate) routes: Vec<Route>,
    route_index: HashMap<String, usize>,
    pub(crate) corridors: Vec<Corridor>,
    pub(crate) stops: Vec<Stop>,
    pub(crate) geofences: Vec<Geofence>,
    /// Every corridor's segments.
    tree: RTree<SegmentEntry>,
    /// Per route, its corridors' segments.
    route_trees: Vec<RTree<SegmentEntry>>,
    /// GTFS trip → corridor.
    trip_corridor: HashMap<String, usize>,
    /// Widest explicit corridor, metres.
    max_corridor_m: f64,
    /// Per-route thresholds from the route file, by route id.
    pub(crate) thresholds: HashMap<String, crate::thresholds::RouteThresholds>,
    /// Timetables, for a GTFS network (docs/gtfs-realtime.md).
    pub(crate) schedule: Option<std::sync::Arc<crate::schedule::Schedule>>,
}

const BUNDLED: &str = include_str!("../data/cairns.geojson");

impl Network {
    /// The bundled sample routes (TransLink Cairns, 2014; see `data/README.md`). Parses the
    /// embedded GeoJSON on each call: build it once and share it.
    pub fn bundled() -> Network {
        // The bundled file is tested to load (tests::bundled_loads); an empty network is the
        // fallback that can never be reached.
        Network::from_geojson(BUNDLED).unwrap_or_else(|_| Network::empty())
    }

    /// A network with nothing in it.
    pub fn empty() -> Network {
        Network {
            frame: LocalFrame::new(Point::new(0.0, 0.0)),
            routes: Vec::new(),
            route_index: HashMap::new(),
            corridors: Vec::new(),
            stops: Vec::new(),
            geofences: Vec::new(),
            tree: RTree::new(),
            route_trees: Vec::new(),
            trip_corridor: HashMap::new(),
            max_corridor_m: 0.0,
            schedule: None,
            thresholds: HashMap::new(),
        }
    }

    /// Builds the network from loader output.
    pub(crate) fn build(raw: RawNetwork) -> Result<Network, LoadError> {
        let all = raw
            .routes
            .iter()
            .flat_map(|r| r.shapes.iter())
            .flat_map(|s| s.coords.iter());
        let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for c in all {
            min = [min[0].min(c.x), min[1].min(c.y)];
            max = [max[0].max(c.x), max[1].max(c.y)];
        }
        if !min[0].is_finite() {
            return Err(LoadError::NoRoutes);
        }
        let frame = LocalFrame::new(Point::new((min[0] + max[0]) / 2.0, (min[1] + max[1]) / 2.0));

        let mut stops: Vec<Stop> = Vec::new();
        let mut stop_index: HashMap<String, usize> = HashMap::new();
        for s in raw.stops {
            if stop_index.contains_key(&s.id) {
                continue;
            }
            stop_index.insert(s.id.clone(), stops.len());
            stops.push(Stop {
                id: s.id.into(),
                name: s.name.into(),
                position: s.position,
                local: frame.to_local(s.position),
            });
        }

        let mut net = Network {
            frame,
            stops,
            geofences: raw.geofences,
            thresholds: raw.thresholds,
            ..Network::empty()
        };
        let mut shape_index: HashMap<(String, String), usize> = HashMap::new();
        for r in raw.routes {
            let ri = match net.route_index.get(&r.id) {
                Some(&ri) => ri,
                None => {
                    net.route_index.insert(r.id.clone(), net.routes.len());
                    net.routes.push(Route {
                        id: r.id.as_str().into(),
                        name: r.name.clone(),
                        corridor_m: r.corridor_m,
                        corridors: Vec::new(),
                    });
                    net.routes.len() - 1
                }
            };
            for shape in r.shapes {
                let Some(mut c) = Corridor::new(shape.id.clone(), ri, &shape.coords, &frame) else {
                    continue;
                };
                let ordered = if shape.stops.is_empty() {
                    &r.stops
                } else {
                    &shape.stops
                };
                let mut from = 0.0;
                for sid in ordered {
                    let Some(&si) = stop_index.get(sid) else {
                        continue;
                    };
                    let (_, prog) = c.place_after(net.stops[si].local, from);
                    from = prog;
                    let at = c.point_at(prog).0;
                    c.stops.push(CorridorStop {
                        stop: si,
                        progress_m: prog,
                        at,
                    });
                }
                let ci = net.corridors.len();
                shape_index.insert((r.id.clone(), shape.id), ci);
                net.routes[ri].corridors.push(ci);
                net.corridors.push(c);
            }
        }
        net.routes.retain(|r| !r.corridors.is_empty());
        if net.routes.is_empty() {
            return Err(LoadError::NoRoutes);
        }
        // Re-index after dropping empty routes.
        net.route_index = net
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.to_string(), i))
            .collect();
        for (ri, r) in net.routes.iter().enumerate() {
            for &ci in &r.corridors {
                net.corridors[ci].route = ri;
            }
        }
        for (trip, route, shape) in raw.trips {
            if let Some(&ci) = shape_index.get(&(route, shape)) {
                net.trip_corridor.insert(trip, ci);
                net.corridors[ci].trips += 1;
            }
        }
        let entries: Vec<SegmentEntry> = net
            .corridors
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.entries(ci))
            .collect();
        net.tree = RTree::bulk_load(entries);
        net.route_trees = net
            .routes
            .iter()
            .map(|r| {
                RTree::bulk_load(
                    r.corridors
                        .iter()
                        .flat_map(|&ci| net.corridors[ci].entries(ci))
                        .collect(),
                )
            })
            .collect();
        net.max_corridor_m = net
            .routes
            .iter()
            .filter_map(|r| r.corridor_m)
            .fold(0.0, f64::max);
        Ok(net)
    }

    /// Counts of what was loaded.
    pub fn summary(&self) -> Summary {
        Summary {
            routes: self.routes.len(),
            corridors: self.corridors.len(),
            stops: self.stops.len(),
            geofences: self.geofences.len(),
            segments: self.tree.size(),
        }
    }

    /// Route ids, in load order.
    pub fn route_ids(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| &*r.id)
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The corridors (route geometries).
    pub fn corridors(&self) -> &[Corridor] {
        &self.corridors
    }

    /// The stops.
    pub fn stops(&self) -> &[Stop] {
        &self.stops
    }

    /// The geofences.
    pub fn geofences(&self) -> &[Geofence] {
        &self.geofences
    }

    /// The local frame of corridors and stops.
    pub fn frame(&self) -> &LocalFrame {
        &self.frame
    }

    /// Index of route `id`.
    pub fn route_index(&self, id: &str) -> Option<usize> {
        self.route_index.get(id).copied()
    }

    /// Corridor of GTFS trip `id`.
    pub fn trip_corridor(&self, id: &str) -> Option<usize> {
        self.trip_corridor.get(id).copied()
    }

    /// The corridor half-width of `corridor`'s route, or `default_m`.
    pub fn corridor_width(&self, corridor: usize, default_m: f64) -> f64 {
        self.corridors
            .get(corridor)
            .and_then(|c| self.routes.get(c.route))
            .and_then(|r| r.corridor_m)
            .unwrap_or(default_m)
    }

    /// Matches local point `p` on route `route` (any route when `None`); see
    /// [`crate::corridor::match_point`].
    pub fn match_local(
        &self,
        route: Option<usize>,
        p: Local,
        default_corridor_m: f64,
        prev: Option<Previous>,
    ) -> Option<Projection> {
        let tree = match route {
            Some(ri) => self.route_trees.get(ri)?,
            None => &self.tree,
        };
        let radius = self.max_corridor_m.max(default_corridor_m);
        let width = |c: &Corridor| {
            self.routes
                .get(c.route)
                .and_then(|r| r.corridor_m)
                .unwrap_or(default_corridor_m)
        };
        match_point(tree, &self.corridors, p, radius, &width, prev)
    }

    /// The timetables, when the network came from a GTFS feed with timed trips.
    pub fn schedule(&self) -> Option<&crate::schedule::Schedule> {
        self.schedule.as_deref()
    }

    /// Every segment's R-tree (for the bench).
    pub fn segment_tree(&self) -> &RTree<SegmentEntry> {
        &self.tree
    }
}
