//! `GET /api/v1/routes` and `/api/v1/routes/{id}`: the broker's precomputed route GeoJSON, indexed
//! once at start-up by route id and served as prebuilt JSON text.
//!
//! A feature belongs to route `R` when its properties say `route`, `route_id` = `R` or `routes`
//! contains `R`; a (Multi)LineString feature also by its own `id` (feature or property).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::AppError;

/// Route GeoJSON, serialized once.
#[derive(Debug, Default)]
pub struct Routes {
    all: String,
    by_id: HashMap<String, String>,
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The route ids a feature belongs to.
fn route_ids(f: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    let props = f.get("properties");
    for key in ["route", "route_id"] {
        ids.extend(props.and_then(|p| p.get(key)).and_then(id_text));
    }
    if let Some(Value::Array(a)) = props.and_then(|p| p.get("routes")) {
        ids.extend(a.iter().filter_map(id_text));
    }
    let geom = f
        .get("geometry")
        .and_then(|g| g.get("type"))
        .and_then(Value::as_str);
    if matches!(geom, Some("LineString" | "MultiLineString")) {
        ids.extend(f.get("id").and_then(id_text));
        ids.extend(props.and_then(|p| p.get("id")).and_then(id_text));
    }
    ids.sort();
    ids.dedup();
    ids
}

impl Routes {
    /// Indexes a FeatureCollection (anything else is served as an empty collection).
    pub fn new(geojson: &Value) -> Routes {
        let features: &[Value] = geojson
            .get("features")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut groups: HashMap<String, Vec<&Value>> = HashMap::new();
        for f in features {
            for id in route_ids(f) {
                groups.entry(id).or_default().push(f);
            }
        }
        let collection =
            |fs: &[&Value]| json!({"type": "FeatureCollection", "features": fs}).to_string();
        let all: Vec<&Value> = features.iter().collect();
        Routes {
            all: collection(&all),
            by_id: groups
                .into_iter()
                .map(|(id, fs)| (id, collection(&fs)))
                .collect(),
        }
    }
}

fn geojson(text: &str) -> Response {
    ([(CONTENT_TYPE, "application/geo+json")], text.to_owned()).into_response()
}

/// Every route, stop and geofence.
pub async fn list(State(st): State<AppState>) -> Response {
    geojson(&st.routes.all)
}

/// One route's features.
///
/// # Errors
/// 404 for an unknown route.
pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, AppError> {
    st.routes
        .by_id
        .get(&id)
        .map(|t| geojson(t))
        .ok_or_else(|| AppError::NotFound(format!("no route {id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_route() {
        let fc = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "R1", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "properties": {}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {"id": "S1", "routes": ["R1", "R2"]}},
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [2, 2]]}, "properties": {"id": "R2"}},
        ]});
        let r = Routes::new(&fc);
        let r1: Value = serde_json::from_str(&r.by_id["R1"]).expect("json");
        assert_eq!(r1["features"].as_array().map(Vec::len), Some(2));
        assert!(!r.by_id.contains_key("S1"));
        let r2: Value = serde_json::from_str(&r.by_id["R2"]).expect("json");
        assert_eq!(r2["features"].as_array().map(Vec::len), Some(2));
    }
}
