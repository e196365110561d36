//! A live spatial index of vehicles' latest positions, for the `near=lat,lon&radius_m` (nearest
//! first, limited) and `bbox` queries of the HTTP API. Points are stored in degrees
//! `[lon, lat]`; radius queries pre-filter with a degree box and rank by great-circle distance.

use std::collections::HashMap;

use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};

use crate::local::{EARTH_RADIUS_M, haversine_m};

type Entry = GeomWithData<[f64; 2], String>;

/// Latest position of every vehicle, updated on each processed fix.
#[derive(Debug, Clone, Default)]
pub struct LiveIndex {
    tree: RTree<Entry>,
    /// Vehicle → its current `[lon, lat]` in the tree.
    at: HashMap<String, [f64; 2]>,
}

impl LiveIndex {
    /// An empty index.
    pub fn new() -> LiveIndex {
        LiveIndex::default()
    }

    /// Sets `vehicle`'s position (degrees).
    pub fn upsert(&mut self, vehicle: &str, lat: f64, lon: f64) {
        if !(lat.is_finite() && lon.is_finite()) {
            return;
        }
        let p = [lon, lat];
        if let Some(old) = self.at.insert(vehicle.to_owned(), p) {
            if old == p {
                return;
            }
            self.tree
                .remove(&GeomWithData::new(old, vehicle.to_owned()));
        }
        self.tree.insert(GeomWithData::new(p, vehicle.to_owned()));
    }

    /// Forgets `vehicle`.
    pub fn remove(&mut self, vehicle: &str) {
        if let Some(old) = self.at.remove(vehicle) {
            self.tree
                .remove(&GeomWithData::new(old, vehicle.to_owned()));
        }
    }

    /// Number of vehicles.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no vehicle is indexed.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Vehicles within `radius_m` of `(lat, lon)`, nearest first, at most `limit`, with their
    /// distance in metres.
    pub fn nearby(&self, lat: f64, lon: f64, radius_m: f64, limit: usize) -> Vec<(String, f64)> {
        if !(lat.is_finite() && lon.is_finite() && radius_m >= 0.0) {
            return Vec::new();
        }
        let dlat = (radius_m / EARTH_RADIUS_M).to_degrees();
        let coslat = lat.to_radians().cos().abs().max(1e-6);
        let dlon = (dlat / coslat).min(360.0);
        let env = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let mut hits: Vec<(String, f64)> = self
            .tree
            .locate_in_envelope_intersecting(&env)
            .map(|e| {
                (
                    e.data.clone(),
                    haversine_m(lat, lon, e.geom()[1], e.geom()[0]),
                )
            })
            .filter(|(_, d)| *d <= radius_m)
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        hits.truncate(limit);
        hits
    }

    /// Vehicles inside `[min_lon, min_lat, max_lon, max_lat]`, sorted by id.
    pub fn in_bbox(&self, bbox: [f64; 4]) -> Vec<String> {
        let [x0, y0, x1, y1] = bbox;
        let env = AABB::from_corners([x0, y0], [x1, y1]);
        let mut ids: Vec<String> = self
            .tree
            .locate_in_envelope(&env)
            .map(|e| e.data.clone())
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_and_bbox() {
        let mut idx = LiveIndex::new();
        idx.upsert("a", -16.920, 145.770);
        idx.upsert("b", -16.925, 145.770); // ~556 m south
        idx.upsert("c", -16.950, 145.770); // ~3.3 km
        idx.upsert("a", -16.9201, 145.770); // moved
        assert_eq!(idx.len(), 3);
        let near: Vec<String> = idx
            .nearby(-16.92, 145.77, 1000.0, 10)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(near, ["a", "b"]);
        assert_eq!(idx.nearby(-16.92, 145.77, 5000.0, 2).len(), 2);
        assert_eq!(idx.in_bbox([145.76, -16.93, 145.78, -16.91]), ["a", "b"]);
        idx.remove("a");
        assert_eq!(idx.in_bbox([145.76, -16.93, 145.78, -16.91]), ["b"]);
    }
}
