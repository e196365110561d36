//! GeoJSON in and out.
//!
//! In, a route file: a FeatureCollection of LineString routes (`route_id`, `name`, optional
//! `corridor_m`), Point stops (`stop_id`, `route_id`, `name`, `sequence`, optional `shape_id`)
//! and Polygon/MultiPolygon geofences (`geofence_id`, `name`). A route may have several lines
//! (give each a `shape_id`); MultiLineString parts become separate lines.
//!
//! Out, for `GET /api/v1/routes[/{id}]`: the same format, so the output loads back.

use crate::thresholds::RouteThresholds;
use std::collections::HashMap;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde_json::{Map, Value, json};

use crate::error::LoadError;
use crate::network::{Geofence, Network, RawNetwork, RawRoute, RawShape, RawStop};

impl Network {
    /// Loads a GeoJSON FeatureCollection.
    ///
    /// # Errors
    /// [`LoadError::Feature`] names the first bad feature (index and id) and what is wrong;
    /// [`LoadError::NoRoutes`] when no LineString route is usable.
    pub fn from_geojson(text: &str) -> Result<Network, LoadError> {
        let v: Value = serde_json::from_str(text).map_err(|e| LoadError::Json(e.to_string()))?;
        if v.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
            return Err(LoadError::NotFeatureCollection(
                "\"type\" is not \"FeatureCollection\"".into(),
            ));
        }
        let Some(features) = v.get("features").and_then(Value::as_array) else {
            return Err(LoadError::NotFeatureCollection(
                "no \"features\" array".into(),
            ));
        };
        let mut raw = RawNetwork::default();
        let mut route_at: HashMap<String, usize> = HashMap::new();
        // (route, shape, sequence, position in file, stop id), sorted into order afterwards.
        let mut stop_refs: Vec<(String, Option<String>, f64, usize, String)> = Vec::new();
        for (index, f) in features.iter().enumerate() {
            let bad = |id: Option<&str>, reason: String| LoadError::Feature {
                index,
                id: id.map(str::to_owned),
                reason,
            };
            let props = f
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let geom = f
                .get("geometry")
                .ok_or_else(|| bad(None, "no geometry".into()))?;
            let kind = geom.get("type").and_then(Value::as_str).unwrap_or("");
            let coords = geom.get("coordinates").unwrap_or(&Value::Null);
            match kind {
                "LineString" | "MultiLineString" => {
                    let id = str_prop(&props, "route_id")
                        .ok_or_else(|| bad(None, "route without \"route_id\"".into()))?;
                    let idr = Some(id.as_str());
                    let corridor_m = match props.get("corridor_m") {
                        None | Some(Value::Null) => None,
                        Some(c) => Some(
                            c.as_f64()
                                .filter(|w| w.is_finite() && *w > 0.0 && *w <= 10_000.0)
                                .ok_or_else(|| {
                                    bad(idr, "corridor_m must be a number in (0, 10000]".into())
                                })?,
                        ),
                    };
                    let lines = if kind == "LineString" {
                        vec![positions(coords).map_err(|e| bad(idr, e))?]
                    } else {
                        coords
                            .as_array()
                            .ok_or_else(|| bad(idr, "coordinates must be an array".into()))?
                            .iter()
                            .map(positions)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| bad(idr, e))?
                    };
                    if let Some(t) =
                        RouteThresholds::from_properties(&props).map_err(|e| bad(idr, e))?
                    {
                        raw.thresholds.insert(id.clone(), t);
                    }
                    let name = str_prop(&props, "name").unwrap_or_else(|| id.clone());
                    let ri = *route_at.entry(id.clone()).or_insert_with(|| {
                        raw.routes.push(RawRoute {
                            id: id.clone(),
                            name,
                            corridor_m,
                            shapes: Vec::new(),
                            stops: Vec::new(),
                        });
                        raw.routes.len() - 1
                    });
                    let shape_id = str_prop(&props, "shape_id").unwrap_or_else(|| id.clone());
                    let n = lines.len();
                    for (k, line) in lines.into_iter().enumerate() {
                        if distinct(&line) < 2 {
                            return Err(bad(
                                idr,
                                "a line needs at least two distinct positions".into(),
                            ));
                        }
                        let sid = if n > 1 {
                            format!("{shape_id}#{k}")
                        } else {
                            shape_id.clone()
                        };
                        raw.routes[ri].shapes.push(RawShape {
                            id: sid,
                            coords: line,
                            stops: Vec::new(),
                        });
                    }
                }
                "Point" => {
                    let id = str_prop(&props, "stop_id")
                        .ok_or_else(|| bad(None, "point without \"stop_id\"".into()))?;
                    let idr = Some(id.as_str());
                    let p = position(coords).map_err(|e| bad(idr, e))?;
                    let route = str_prop(&props, "route_id")
                        .ok_or_else(|| bad(idr, "stop without \"route_id\"".into()))?;
                    let sequence = match props.get("sequence") {
                        None | Some(Value::Null) => index as f64,
                        Some(s) => s
                            .as_f64()
                            .ok_or_else(|| bad(idr, "sequence must be a number".into()))?,
                    };
                    let name = str_prop(&props, "name").unwrap_or_else(|| id.clone());
                    raw.stops.push(RawStop {
                        id: id.clone(),
                        name,
                        position: p.into(),
                    });
                    stop_refs.push((route, str_prop(&props, "shape_id"), sequence, index, id));
                }
                "Polygon" | "MultiPolygon" => {
                    let id = str_prop(&props, "geofence_id")
                        .or_else(|| str_prop(&props, "id"))
                        .ok_or_else(|| bad(None, "polygon without \"geofence_id\"".into()))?;
                    let idr = Some(id.as_str());
                    let polys = if kind == "Polygon" {
                        vec![polygon(coords).map_err(|e| bad(idr, e))?]
                    } else {
                        coords
                            .as_array()
                            .ok_or_else(|| bad(idr, "coordinates must be an array".into()))?
                            .iter()
                            .map(polygon)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| bad(idr, e))?
                    };
                    let name = str_prop(&props, "name").unwrap_or_else(|| id.clone());
                    raw.geofences
                        .push(Geofence::new(id, name, MultiPolygon::new(polys)));
                }
                other => return Err(bad(None, format!("unsupported geometry type {other:?}"))),
            }
        }
        stop_refs.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.3.cmp(&b.3)));
        for (route, shape, _, index, stop) in stop_refs {
            let Some(&ri) = route_at.get(&route) else {
                return Err(LoadError::Feature {
                    index,
                    id: Some(stop),
                    reason: format!("unknown route_id {route:?}"),
                });
            };
            let r = &mut raw.routes[ri];
            match shape {
                Some(sh) => match r.shapes.iter_mut().find(|s| s.id == sh) {
                    Some(s) => s.stops.push(stop),
                    None => {
                        return Err(LoadError::Feature {
                            index,
                            id: Some(stop),
                            reason: format!("unknown shape_id {sh:?}"),
                        });
                    }
                },
                None => r.stops.push(stop),
            }
        }
        Network::build(raw)
    }
}

impl Network {
    /// Everything as one GeoJSON FeatureCollection (the format `from_geojson` reads).
    pub fn routes_geojson(&self) -> Value {
        let mut features = Vec::new();
        for ri in 0..self.routes.len() {
            self.route_features(ri, &mut features);
        }
        for g in &self.geofences {
            let geometry = serde_json::to_value(geo_to_geojson(&g.area)).unwrap_or(Value::Null);
            features.push(json!({"type": "Feature", "geometry": geometry,
                "properties": {"geofence_id": g.id, "name": g.name}}));
        }
        json!({"type": "FeatureCollection", "features": features})
    }

    /// One route's lines and stops as a GeoJSON FeatureCollection.
    pub fn route_geojson(&self, id: &str) -> Option<Value> {
        let ri = self.route_index(id)?;
        let mut features = Vec::new();
        self.route_features(ri, &mut features);
        Some(json!({"type": "FeatureCollection", "features": features}))
    }

    fn route_features(&self, ri: usize, out: &mut Vec<Value>) {
        let r = &self.routes[ri];
        let multi = r.corridors.len() > 1;
        for &ci in &r.corridors {
            let c = &self.corridors[ci];
            let coords: Vec<[f64; 2]> = c.coords.iter().map(|c| [c.x, c.y]).collect();
            let mut props = json!({"route_id": r.id, "name": r.name, "shape_id": c.id,
                "length_m": (c.length_m() * 10.0).round() / 10.0});
            if let Some(w) = r.corridor_m {
                props["corridor_m"] = json!(w);
            }
            out.push(json!({"type": "Feature", "properties": props,
                "geometry": {"type": "LineString", "coordinates": coords}}));
            for (seq, cs) in c.stops.iter().enumerate() {
                let s = &self.stops[cs.stop];
                let mut props =
                    json!({"stop_id": s.id, "route_id": r.id, "name": s.name, "sequence": seq + 1});
                if multi {
                    props["shape_id"] = json!(c.id);
                }
                out.push(json!({"type": "Feature", "properties": props,
                    "geometry": {"type": "Point", "coordinates": [s.position.x(), s.position.y()]}}));
            }
        }
    }
}

/// A MultiPolygon's GeoJSON geometry object.
fn geo_to_geojson(area: &MultiPolygon<f64>) -> Value {
    let ring = |ls: &geo::LineString<f64>| ls.coords().map(|c| [c.x, c.y]).collect::<Vec<_>>();
    let polys: Vec<Vec<Vec<[f64; 2]>>> = area
        .iter()
        .map(|p| {
            std::iter::once(ring(p.exterior()))
                .chain(p.interiors().iter().map(ring))
                .collect()
        })
        .collect();
    if polys.len() == 1 {
        json!({"type": "Polygon", "coordinates": polys[0]})
    } else {
        json!({"type": "MultiPolygon", "coordinates": polys})
    }
}

/// A string property (numbers are accepted as their text: ids are often numeric).
fn str_prop(props: &Map<String, Value>, key: &str) -> Option<String> {
    match props.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One `[lon, lat]` position, range-checked.
fn position(v: &Value) -> Result<Coord<f64>, String> {
    let a = v
        .as_array()
        .ok_or("a position must be an array [lon, lat]")?;
    let (Some(lon), Some(lat)) = (
        a.first().and_then(Value::as_f64),
        a.get(1).and_then(Value::as_f64),
    ) else {
        return Err("a position must be [lon, lat] numbers".into());
    };
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(format!(
            "position [{lon}, {lat}] out of range (is it [lon, lat]?)"
        ));
    }
    Ok(Coord { x: lon, y: lat })
}

fn positions(v: &Value) -> Result<Vec<Coord<f64>>, String> {
    v.as_array()
        .ok_or("coordinates must be an array")?
        .iter()
        .map(position)
        .collect()
}

fn distinct(line: &[Coord<f64>]) -> usize {
    1 + line.windows(2).filter(|w| w[0] != w[1]).count()
}

pub(crate) fn polygon(v: &Value) -> Result<Polygon<f64>, String> {
    let rings = v
        .as_array()
        .ok_or("polygon coordinates must be an array of rings")?;
    let mut ls: Vec<LineString<f64>> = Vec::with_capacity(rings.len());
    for r in rings {
        let pts = positions(r)?;
        if distinct(&pts) < 3 {
            return Err("a polygon ring needs at least three distinct positions".into());
        }
        ls.push(pts.into_iter().collect());
    }
    let mut it = ls.into_iter();
    let exterior = it.next().ok_or("a polygon needs an exterior ring")?;
    Ok(Polygon::new(exterior, it.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","properties":{"route_id":"A","name":"Route A","corridor_m":40},
       "geometry":{"type":"LineString","coordinates":[[145.77,-16.92],[145.78,-16.92],[145.78,-16.93]]}},
      {"type":"Feature","properties":{"stop_id":"s2","route_id":"A","name":"Two","sequence":2},
       "geometry":{"type":"Point","coordinates":[145.78,-16.925]}},
      {"type":"Feature","properties":{"stop_id":"s1","route_id":"A","name":"One","sequence":1},
       "geometry":{"type":"Point","coordinates":[145.775,-16.92]}},
      {"type":"Feature","properties":{"geofence_id":"depot","name":"Depot"},
       "geometry":{"type":"Polygon","coordinates":[[[145.76,-16.91],[145.765,-16.91],[145.765,-16.915],[145.76,-16.915],[145.76,-16.91]]]}}
    ]}"#;

    #[test]
    fn loads_routes_stops_geofences() {
        let n = Network::from_geojson(SMALL).unwrap();
        let s = n.summary();
        assert_eq!((s.routes, s.stops, s.geofences, s.segments), (1, 2, 1, 2));
        let c = &n.corridors()[0];
        let names: Vec<&str> = c.stops.iter().map(|cs| &*n.stops()[cs.stop].id).collect();
        assert_eq!(names, ["s1", "s2"], "ordered by sequence");
        assert!(c.stops[0].progress_m < c.stops[1].progress_m);
        assert!(n.geofences()[0].contains(geo::Point::new(145.762, -16.912)));
        assert!(!n.geofences()[0].contains(geo::Point::new(145.762, -16.92)));
        // Round trip through routes_geojson.
        let again = Network::from_geojson(&n.routes_geojson().to_string()).unwrap();
        assert_eq!(again.summary(), s);
        assert!(n.route_geojson("A").is_some() && n.route_geojson("B").is_none());
    }

    #[test]
    fn first_bad_feature_is_named() {
        let bad_line = SMALL.replace(
            "[145.78,-16.92],[145.78,-16.93]",
            "[245.78,-16.92],[145.78,-16.93]",
        );
        let e = Network::from_geojson(&bad_line).unwrap_err();
        assert!(
            matches!(&e, LoadError::Feature { index: 0, id: Some(id), .. } if id == "A"),
            "{e}"
        );
        assert!(e.to_string().contains("feature 0 (A)"), "{e}");
        let unknown = SMALL.replace(
            r#""route_id":"A","name":"Two""#,
            r#""route_id":"Z","name":"Two""#,
        );
        let e = Network::from_geojson(&unknown).unwrap_err();
        assert!(
            matches!(&e, LoadError::Feature { index: 1, id: Some(id), .. } if id == "s2"),
            "{e}"
        );
        let e = Network::from_geojson(r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"LineString","coordinates":[[1,1],[2,2]]}}]}"#).unwrap_err();
        assert!(e.to_string().contains("route_id"), "{e}");
        assert!(matches!(
            Network::from_geojson("{"),
            Err(LoadError::Json(_))
        ));
        assert!(matches!(
            Network::from_geojson("[]"),
            Err(LoadError::NotFeatureCollection(_))
        ));
        assert!(matches!(
            Network::from_geojson(r#"{"type":"FeatureCollection","features":[]}"#),
            Err(LoadError::NoRoutes)
        ));
    }
}
