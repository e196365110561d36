//! Local planar coordinates: an equirectangular projection around a reference point, in metres
//! east (`x`) and north (`y`), plus great-circle distance. Accurate to well under 0.1 % within
//! ~100 km of the reference, which covers a city network and a vehicle's recent track.

use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A local east-north frame anchored at `(lat0, lon0)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalFrame {
    /// Reference latitude, degrees.
    pub lat0: f64,
    /// Reference longitude, degrees.
    pub lon0: f64,
    /// Metres per degree of longitude at `lat0`.
    m_per_deg_lon: f64,
}

/// Metres per degree of latitude.
const M_PER_DEG_LAT: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

impl LocalFrame {
    /// A frame anchored at `(lat, lon)` degrees.
    pub fn new(lat: f64, lon: f64) -> LocalFrame {
        let m_per_deg_lon = (M_PER_DEG_LAT * lat.to_radians().cos()).max(1.0);
        LocalFrame {
            lat0: lat,
            lon0: lon,
            m_per_deg_lon,
        }
    }

    /// `(x, y)` metres east and north of the reference.
    pub fn to_local(&self, lat: f64, lon: f64) -> [f64; 2] {
        [
            (lon - self.lon0) * self.m_per_deg_lon,
            (lat - self.lat0) * M_PER_DEG_LAT,
        ]
    }

    /// `(lat, lon)` degrees of a local point.
    pub fn to_geo(&self, p: [f64; 2]) -> (f64, f64) {
        (
            self.lat0 + p[1] / M_PER_DEG_LAT,
            self.lon0 + p[0] / self.m_per_deg_lon,
        )
    }
}

/// Great-circle (haversine) distance between two WGS84 points, metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Euclidean distance between two local points, metres.
pub fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    // Not `hypot`: its overflow care is ~10x slower and local metres never overflow.
    let (dx, dy) = (a[0] - b[0], a[1] - b[1]);
    (dx * dx + dy * dy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_round_trip_and_agrees_with_haversine() {
        let f = LocalFrame::new(-16.92, 145.77);
        let p = f.to_local(-16.93, 145.79);
        let (lat, lon) = f.to_geo(p);
        assert!((lat + 16.93).abs() < 1e-9 && (lon - 145.79).abs() < 1e-9);
        let h = haversine_m(-16.92, 145.77, -16.93, 145.79);
        let d = dist([0.0, 0.0], p);
        assert!((h - d).abs() / h < 1e-3, "haversine {h} local {d}");
    }
}
