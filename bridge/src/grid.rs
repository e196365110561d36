//! Geometry helpers shared by the fleet and subscription indexes: the [`Bbox`] type and the
//! fixed-size degree grid that both index by. Great-circle distance and the Earth radius are
//! geo-engine's ([`geo_engine::local`]), so the bridge and the pipeline measure alike.

use geo_engine::local::EARTH_RADIUS_M;

/// A lon/lat bounding box, WGS84 degrees, `min <= max` on both axes (no antimeridian wrap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// West edge, degrees.
    pub min_lon: f64,
    /// South edge, degrees.
    pub min_lat: f64,
    /// East edge, degrees.
    pub max_lon: f64,
    /// North edge, degrees.
    pub max_lat: f64,
}

/// Why a bbox was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BboxError {
    /// Not four numbers.
    #[error("bbox must be four numbers: minLon,minLat,maxLon,maxLat")]
    Shape,
    /// Out of range, not finite, or min > max.
    #[error("bbox out of range: need -180<=minLon<=maxLon<=180 and -90<=minLat<=maxLat<=90")]
    Range,
}

impl Bbox {
    /// The whole world.
    pub const WORLD: Bbox = Bbox {
        min_lon: -180.0,
        min_lat: -90.0,
        max_lon: 180.0,
        max_lat: 90.0,
    };

    /// Builds a bbox from `[minLon, minLat, maxLon, maxLat]`.
    ///
    /// # Errors
    /// [`BboxError::Range`] when a value is not finite, out of range, or min > max.
    pub fn new(v: [f64; 4]) -> Result<Bbox, BboxError> {
        let [min_lon, min_lat, max_lon, max_lat] = v;
        let lon_ok = |x: f64| x.is_finite() && (-180.0..=180.0).contains(&x);
        let lat_ok = |x: f64| x.is_finite() && (-90.0..=90.0).contains(&x);
        if !(lon_ok(min_lon) && lon_ok(max_lon) && lat_ok(min_lat) && lat_ok(max_lat)) {
            return Err(BboxError::Range);
        }
        if min_lon > max_lon || min_lat > max_lat {
            return Err(BboxError::Range);
        }
        Ok(Bbox {
            min_lon,
            min_lat,
            max_lon,
            max_lat,
        })
    }

    /// Parses `minLon,minLat,maxLon,maxLat` (a query parameter).
    ///
    /// # Errors
    /// [`BboxError`] when it is not four numbers in range.
    pub fn parse(s: &str) -> Result<Bbox, BboxError> {
        let mut v = [0.0; 4];
        let mut parts = s.split(',');
        for slot in &mut v {
            let part = parts.next().ok_or(BboxError::Shape)?;
            *slot = part.trim().parse().map_err(|_| BboxError::Shape)?;
        }
        if parts.next().is_some() {
            return Err(BboxError::Shape);
        }
        Bbox::new(v)
    }

    /// The bbox around a circle of `radius_m` metres at (`lat`, `lon`), clamped to the world.
    pub fn around(lat: f64, lon: f64, radius_m: f64) -> Bbox {
        let dlat = (radius_m / EARTH_RADIUS_M).to_degrees();
        let coslat = lat.to_radians().cos().max(1e-6);
        let dlon = (dlat / coslat).min(360.0);
        Bbox {
            min_lon: (lon - dlon).max(-180.0),
            min_lat: (lat - dlat).max(-90.0),
            max_lon: (lon + dlon).min(180.0),
            max_lat: (lat + dlat).min(90.0),
        }
    }

    /// Whether the point lies inside or on the edge.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        lon >= self.min_lon && lon <= self.max_lon && lat >= self.min_lat && lat <= self.max_lat
    }
}

/// A grid cell: (column, row) of a grid of `cell_deg`-sized squares.
pub type Cell = (i32, i32);

/// The grid both indexes use; cells are `cell_deg` degrees on a side.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    cell_deg: f64,
}

impl Grid {
    /// A grid of `cell_deg` degrees (clamped to 0.001..=90).
    pub fn new(cell_deg: f64) -> Grid {
        let cell_deg = if cell_deg.is_finite() {
            cell_deg.clamp(0.001, 90.0)
        } else {
            0.05
        };
        Grid { cell_deg }
    }

    /// The cell holding a point; coordinates out of range are clamped.
    pub fn cell(&self, lat: f64, lon: f64) -> Cell {
        let lon = if lon.is_finite() {
            lon.clamp(-180.0, 180.0)
        } else {
            0.0
        };
        let lat = if lat.is_finite() {
            lat.clamp(-90.0, 90.0)
        } else {
            0.0
        };
        // In range by the clamp above: at most 360/0.001 = 360_000 columns, far below i32::MAX.
        (
            (lon / self.cell_deg).floor() as i32,
            (lat / self.cell_deg).floor() as i32,
        )
    }

    /// The cells a bbox covers, or `None` when they are more than `max_cells`.
    pub fn cells(&self, bbox: &Bbox, max_cells: usize) -> Option<Vec<Cell>> {
        let (x0, y0) = self.cell(bbox.min_lat, bbox.min_lon);
        let (x1, y1) = self.cell(bbox.max_lat, bbox.max_lon);
        let n = (i64::from(x1) - i64::from(x0) + 1) * (i64::from(y1) - i64::from(y0) + 1);
        if n < 0 || n > max_cells as i64 {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        for x in x0..=x1 {
            for y in y0..=y1 {
                out.push((x, y));
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parse_and_reject() {
        let b = Bbox::parse("145.7,-16.95,145.8,-16.9").expect("valid");
        assert!(b.contains(-16.92, 145.75));
        assert!(!b.contains(-16.8, 145.75));
        assert_eq!(Bbox::parse("1,2,3"), Err(BboxError::Shape));
        assert_eq!(Bbox::parse("1,2,3,4,5"), Err(BboxError::Shape));
        assert_eq!(Bbox::parse("3,2,1,4"), Err(BboxError::Range));
        assert_eq!(Bbox::parse("0,-91,1,0"), Err(BboxError::Range));
        assert_eq!(Bbox::parse("NaN,0,1,1"), Err(BboxError::Range));
    }

    #[test]
    fn grid_cells_cover_bbox_and_cap() {
        let g = Grid::new(0.1);
        let b = Bbox::new([145.71, -16.95, 145.89, -16.81]).expect("valid");
        let cells = g.cells(&b, 100).expect("few cells");
        assert!(cells.contains(&g.cell(-16.9, 145.8)));
        assert_eq!(cells.len(), 4);
        assert!(g.cells(&Bbox::WORLD, 1000).is_none());
    }

    #[test]
    fn distance_one_degree_latitude() {
        use geo_engine::Point;
        use geo_engine::local::haversine_m;
        let d = haversine_m(Point::new(0.0, 0.0), Point::new(0.0, 1.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        let b = Bbox::around(10.0, 20.0, 1000.0);
        let edge = haversine_m(Point::new(20.0, 10.0), Point::new(20.0, b.max_lat));
        assert!((edge - 1000.0).abs() < 1.0);
    }
}
