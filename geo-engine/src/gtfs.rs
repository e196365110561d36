//! GTFS route loader (zip bytes, or a folder's files through a callback), read with
//! `gtfs-structures` (no HTTP client). One corridor per shape; each corridor's stops come from
//! its longest trip; trips without a shape get a corridor through their stops.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Write};

use geo::{Coord, Point};
use gtfs_structures::Gtfs;

use crate::error::LoadError;
use crate::network::{Network, RawNetwork, RawRoute, RawShape, RawStop};
use crate::schedule::Schedule;

/// The files of a GTFS feed that a folder may hold (spec order).
pub const GTFS_FILES: &[&str] = &[
    "agency.txt",
    "stops.txt",
    "routes.txt",
    "trips.txt",
    "stop_times.txt",
    "calendar.txt",
    "calendar_dates.txt",
    "fare_attributes.txt",
    "fare_rules.txt",
    "shapes.txt",
    "frequencies.txt",
    "transfers.txt",
    "pathways.txt",
    "levels.txt",
    "feed_info.txt",
    "attributions.txt",
    "translations.txt",
];

impl Network {
    /// Loads a GTFS feed from the bytes of its zip archive.
    ///
    /// # Errors
    /// [`LoadError::Gtfs`] when the archive or a file in it cannot be parsed;
    /// [`LoadError::NoRoutes`] when no route has a usable geometry.
    pub fn from_gtfs_zip(bytes: &[u8]) -> Result<Network, LoadError> {
        let gtfs =
            Gtfs::from_reader(Cursor::new(bytes)).map_err(|e| LoadError::Gtfs(e.to_string()))?;
        let mut net = Network::build(raw_from_gtfs(&gtfs))?;
        net.schedule = Schedule::from_gtfs(&gtfs, &net)?.map(std::sync::Arc::new);
        Ok(net)
    }

    /// Loads a GTFS feed laid out as a folder: `files(name)` returns the bytes of e.g.
    /// `"stops.txt"` or `None` when absent (the caller does the I/O).
    ///
    /// # Errors
    /// As [`Network::from_gtfs_zip`]; `stops.txt`, `routes.txt`, `trips.txt` and
    /// `stop_times.txt` are required.
    pub fn from_gtfs_dir_files(
        files: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Network, LoadError> {
        for required in ["stops.txt", "routes.txt", "trips.txt", "stop_times.txt"] {
            if files(required).is_none() {
                return Err(LoadError::Gtfs(format!("{required} is missing")));
            }
        }
        // gtfs-structures reads a folder only from a path (I/O this crate does not do), so
        // the files are packed, uncompressed, into an in-memory archive.
        let zip_err =
            |e: zip::result::ZipError| LoadError::Gtfs(format!("packing the folder: {e}"));
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for name in GTFS_FILES {
            if let Some(bytes) = files(name) {
                w.start_file(*name, opts).map_err(zip_err)?;
                w.write_all(&bytes)
                    .map_err(|e| LoadError::Gtfs(e.to_string()))?;
            }
        }
        let archive = w.finish().map_err(zip_err)?.into_inner();
        Network::from_gtfs_zip(&archive)
    }
}

/// Turns a parsed feed into loader input.
fn raw_from_gtfs(gtfs: &Gtfs) -> RawNetwork {
    let mut raw = RawNetwork::default();
    for s in gtfs.stops.values() {
        if let (Some(lat), Some(lon)) = (s.latitude, s.longitude) {
            let name = s.name.clone().unwrap_or_else(|| s.id.clone());
            raw.stops.push(RawStop {
                id: s.id.clone(),
                name,
                position: Point::new(lon, lat),
            });
        }
    }
    raw.stops.sort_by(|a, b| a.id.cmp(&b.id));

    // Per (route, shape): the trip with the most stops represents the stop pattern.
    // BTreeMap keeps the output independent of hash order.
    let mut best: BTreeMap<(String, String), (&str, usize)> = BTreeMap::new();
    for t in gtfs.trips.values() {
        let shape = t
            .shape_id
            .clone()
            .unwrap_or_else(|| format!("trip:{}", t.id));
        raw.trips
            .push((t.id.clone(), t.route_id.clone(), shape.clone()));
        let e = best
            .entry((t.route_id.clone(), shape))
            .or_insert((t.id.as_str(), 0));
        if t.stop_times.len() > e.1 || (t.stop_times.len() == e.1 && t.id.as_str() < e.0) {
            *e = (t.id.as_str(), t.stop_times.len());
        }
    }
    raw.trips.sort();

    let mut routes: Vec<&gtfs_structures::Route> = gtfs.routes.values().collect();
    routes.sort_by(|a, b| (a.order, &a.id).cmp(&(b.order, &b.id)));
    let mut by_route: HashMap<&str, Vec<RawShape>> = HashMap::new();
    for ((route, shape_id), (trip_id, _)) in &best {
        let Some(trip) = gtfs.trips.get(*trip_id) else {
            continue;
        };
        let mut stop_times: Vec<_> = trip.stop_times.iter().collect();
        stop_times.sort_by_key(|st| st.stop_sequence);
        let stops: Vec<String> = stop_times.iter().map(|st| st.stop.id.clone()).collect();
        let coords: Vec<Coord<f64>> = match trip.shape_id.as_ref().and_then(|s| gtfs.shapes.get(s))
        {
            Some(points) => {
                let mut pts: Vec<_> = points.iter().collect();
                pts.sort_by_key(|p| p.sequence);
                pts.iter()
                    .map(|p| Coord {
                        x: p.longitude,
                        y: p.latitude,
                    })
                    .collect()
            }
            None => stop_times
                .iter()
                .filter_map(|st| {
                    Some(Coord {
                        x: st.stop.longitude?,
                        y: st.stop.latitude?,
                    })
                })
                .collect(),
        };
        let Some(route) = gtfs.routes.get(route) else {
            continue;
        };
        by_route
            .entry(route.id.as_str())
            .or_default()
            .push(RawShape {
                id: shape_id.clone(),
                coords,
                stops,
            });
    }
    for r in routes {
        let Some(shapes) = by_route.remove(r.id.as_str()) else {
            continue;
        };
        let name = match (&r.short_name, &r.long_name) {
            (Some(s), Some(l)) if !s.is_empty() && !l.is_empty() => format!("{s} {l}"),
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(l)) if !l.is_empty() => l.clone(),
            _ => r.id.clone(),
        };
        raw.routes.push(RawRoute {
            id: r.id.clone(),
            name,
            corridor_m: None,
            shapes,
            stops: Vec::new(),
        });
    }
    raw
}
