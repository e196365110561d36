//! Coordinates: WGS84 positions are [`geo::Point`]s (x = longitude, y = latitude, degrees) at every
//! public boundary; [`Local`] is a position in metres east (`x`) and north (`y`) of a
//! [`LocalFrame`]'s origin, an equirectangular projection accurate to well under 0.1 % within
//! ~100 km of the origin, which covers a city network and a vehicle's recent track. Great-circle
//! distance is geo's [`Haversine`] metric ([`haversine_m`]).

use geo::{Coord, Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG / GRS80), metres: the radius of geo's [`Haversine`], so the local frame
/// and great-circle distances agree.
pub const EARTH_RADIUS_M: f64 = Haversine.radius();

/// Metres per degree of latitude.
const M_PER_DEG_LAT: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// The least metres per degree of longitude: keeps the projection finite at the poles.
const MIN_M_PER_DEG_LON: f64 = 1.0;

/// A position in a [`LocalFrame`], metres east (`x`) and north (`y`) of its origin.
///
/// # Examples
/// ```
/// use geo_engine::local::Local;
/// assert_eq!(Local::new(3.0, 4.0).dist(Local::new(0.0, 0.0)), 5.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Local(pub Coord<f64>);

impl Local {
    /// `x` metres east and `y` metres north of the origin.
    pub const fn new(x: f64, y: f64) -> Local {
        Local(Coord { x, y })
    }

    /// Metres east of the origin.
    pub fn x(self) -> f64 {
        self.0.x
    }

    /// Metres north of the origin.
    pub fn y(self) -> f64 {
        self.0.y
    }

    /// Euclidean distance to `other`, metres.
    pub fn dist(self, other: Local) -> f64 {
        dist(self, other)
    }
}

impl From<Local> for Point<f64> {
    /// The same metres as a geo `Point` (for R-tree queries over local geometry).
    fn from(l: Local) -> Point<f64> {
        Point(l.0)
    }
}

/// A local east-north frame anchored at an origin.
///
/// # Examples
/// ```
/// use geo::Point;
/// use geo_engine::local::LocalFrame;
/// let f = LocalFrame::new(Point::new(145.77, -16.92));
/// let p = f.to_local(Point::new(145.78, -16.92));
/// assert!((p.x() - 1064.0).abs() < 1.0 && p.y().abs() < 1e-9);
/// ```
// The field names are the serialised form of a tracker snapshot (Redis): keep them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalFrame {
    /// Origin latitude, degrees.
    lat0: f64,
    /// Origin longitude, degrees.
    lon0: f64,
    /// Metres per degree of longitude at `lat0`.
    m_per_deg_lon: f64,
}

impl LocalFrame {
    /// A frame anchored at `origin` (lon, lat degrees).
    pub fn new(origin: Point<f64>) -> LocalFrame {
        let (lon, lat) = origin.x_y();
        let m_per_deg_lon = (M_PER_DEG_LAT * lat.to_radians().cos()).max(MIN_M_PER_DEG_LON);
        LocalFrame {
            lat0: lat,
            lon0: lon,
            m_per_deg_lon,
        }
    }

    /// The origin (lon, lat degrees).
    pub fn origin(&self) -> Point<f64> {
        Point::new(self.lon0, self.lat0)
    }

    /// Where `p` (lon, lat degrees) lies in this frame.
    pub fn to_local(&self, p: Point<f64>) -> Local {
        Local::new(
            (p.x() - self.lon0) * self.m_per_deg_lon,
            (p.y() - self.lat0) * M_PER_DEG_LAT,
        )
    }

    /// The WGS84 position (lon, lat degrees) of a local point.
    pub fn to_geo(&self, p: Local) -> Point<f64> {
        Point::new(
            self.lon0 + p.x() / self.m_per_deg_lon,
            self.lat0 + p.y() / M_PER_DEG_LAT,
        )
    }
}

/// Great-circle distance between two WGS84 points (lon, lat degrees), metres: geo's
/// [`Haversine`] metric.
///
/// Never NaN: at (nearly) antipodal points rounding can push the haversine term past 1 and geo
/// returns NaN; that, and non-finite input, gives half the circumference, so a threshold check
/// (`d < limit`, `d > limit`) on it keeps meaning "far".
pub fn haversine_m(a: Point<f64>, b: Point<f64>) -> f64 {
    let d = Haversine.distance(a, b);
    if d.is_nan() {
        EARTH_RADIUS_M * std::f64::consts::PI
    } else {
        d
    }
}

/// Euclidean distance between two local points, metres.
pub fn dist(a: Local, b: Local) -> f64 {
    // Not `hypot`: its overflow care is ~10x slower and local metres never overflow.
    let (dx, dy) = (a.x() - b.x(), a.y() - b.y());
    (dx * dx + dy * dy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_round_trip_and_agrees_with_haversine() {
        let f = LocalFrame::new(Point::new(145.77, -16.92));
        let p = f.to_local(Point::new(145.79, -16.93));
        let q = f.to_geo(p);
        assert!((q.y() + 16.93).abs() < 1e-9 && (q.x() - 145.79).abs() < 1e-9);
        let h = haversine_m(Point::new(145.77, -16.92), Point::new(145.79, -16.93));
        let d = dist(Local::default(), p);
        assert!((h - d).abs() / h < 1e-3, "haversine {h} local {d}");
    }

    #[test]
    fn haversine_is_never_nan() {
        let antipodes = haversine_m(Point::new(0.0, 0.0), Point::new(180.0, 0.0));
        assert!((antipodes - EARTH_RADIUS_M * std::f64::consts::PI).abs() < 1.0);
        let nan = haversine_m(Point::new(f64::NAN, 0.0), Point::new(0.0, 0.0));
        assert_eq!(nan, EARTH_RADIUS_M * std::f64::consts::PI);
    }
}
