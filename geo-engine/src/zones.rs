//! Zones (`--zones FILE`): a GeoJSON FeatureCollection of Polygons/MultiPolygons (depots,
//! terminals, school zones) added to any network's geofences, a GTFS one included, so they
//! raise `geofence_enter`/`geofence_exit` like geofences of a GeoJSON route file.

use geo::MultiPolygon;
use serde_json::Value;

use crate::error::LoadError;
use crate::geojson::polygon;
use crate::network::{Geofence, Network};

impl Network {
    /// Adds the polygons of GeoJSON `text` as geofences; returns how many. Each feature needs a
    /// `geofence_id` (or `id`) property; `name` is optional.
    ///
    /// # Errors
    /// [`LoadError::Json`], [`LoadError::NotFeatureCollection`], or [`LoadError::Feature`]
    /// naming the first feature that is not a valid polygon with an id. The network is
    /// unchanged then.
    pub fn add_zones(&mut self, text: &str) -> Result<usize, LoadError> {
        let v: Value = serde_json::from_str(text).map_err(|e| LoadError::Json(e.to_string()))?;
        let features = v
            .get("features")
            .and_then(Value::as_array)
            .filter(|_| v.get("type").and_then(Value::as_str) == Some("FeatureCollection"))
            .ok_or_else(|| {
                LoadError::NotFeatureCollection("expected a FeatureCollection of polygons".into())
            })?;
        let mut zones = Vec::with_capacity(features.len());
        for (index, f) in features.iter().enumerate() {
            let props = f.get("properties").and_then(Value::as_object);
            let prop = |k: &str| {
                props.and_then(|p| p.get(k)).and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_i64().map(|n| n.to_string()))
                })
            };
            let id = prop("geofence_id").or_else(|| prop("id"));
            let bad = |reason: String| LoadError::Feature {
                index,
                id: id.clone(),
                reason,
            };
            let Some(id) = id.clone() else {
                return Err(bad("zone without \"geofence_id\"".into()));
            };
            let geom = f.get("geometry").unwrap_or(&Value::Null);
            let coords = geom.get("coordinates").unwrap_or(&Value::Null);
            let polys = match geom.get("type").and_then(Value::as_str) {
                Some("Polygon") => vec![polygon(coords).map_err(bad)?],
                Some("MultiPolygon") => coords
                    .as_array()
                    .ok_or_else(|| bad("coordinates must be an array".into()))?
                    .iter()
                    .map(polygon)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?,
                other => return Err(bad(format!("a zone must be a Polygon, not {other:?}"))),
            };
            let name = prop("name").unwrap_or_else(|| id.clone());
            zones.push(Geofence::new(id, name, MultiPolygon::new(polys)));
        }
        let n = zones.len();
        self.geofences.extend(zones);
        Ok(n)
    }
}
