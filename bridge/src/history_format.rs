//! The three shapes of a `/history` answer: JSON (`{"vehicle","source","from","to","count",
//! "positions":[...]}`), GeoJSON (a FeatureCollection: the track as one LineString, then each
//! fix as a Point with its columns as properties) and CSV (a header of every column, one fix a
//! line; the source in the `X-Fleetmq-Source` header).

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::AppError;
use crate::history::{COLUMNS, Source};

/// `format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    GeoJson,
    Csv,
}

impl Format {
    /// # Errors
    /// 400 for anything but `json`, `geojson` or `csv`.
    pub fn parse(s: Option<&str>) -> Result<Format, AppError> {
        match s.map(str::trim) {
            None | Some("json") => Ok(Format::Json),
            Some("geojson") => Ok(Format::GeoJson),
            Some("csv") => Ok(Format::Csv),
            Some(_) => Err(AppError::BadRequest(
                "format must be json, geojson or csv".into(),
            )),
        }
    }
}

/// One CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(v: Option<&Value>, out: &mut String) {
    let text = match v {
        None | Some(Value::Null) => return,
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

fn csv(rows: &[Value]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        for (i, c) in COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(r.get(*c), &mut out);
        }
        out.push_str("\r\n");
    }
    out
}

fn coordinates(r: &Value) -> Option<[f64; 2]> {
    Some([r.get("lon")?.as_f64()?, r.get("lat")?.as_f64()?])
}

fn geojson(vehicle: &str, source: Source, from: i64, to: i64, rows: &[Value]) -> Value {
    let line: Vec<[f64; 2]> = rows.iter().filter_map(coordinates).collect();
    let mut features = Vec::with_capacity(rows.len() + 1);
    features.push(json!({
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": line},
        "properties": {"vehicle": vehicle, "from": from, "to": to, "count": rows.len()},
    }));
    for r in rows {
        let Some(c) = coordinates(r) else { continue };
        features.push(json!({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": c},
            "properties": r,
        }));
    }
    json!({"type": "FeatureCollection", "source": source.as_str(), "features": features})
}

/// The response for `rows` in `format`.
pub fn render(
    format: Format,
    vehicle: &str,
    source: Source,
    from: i64,
    to: i64,
    rows: &[Value],
) -> Response {
    let (content_type, body) = match format {
        Format::Json => (
            "application/json",
            json!({
                "vehicle": vehicle,
                "source": source.as_str(),
                "from": from,
                "to": to,
                "count": rows.len(),
                "positions": rows,
            })
            .to_string(),
        ),
        Format::GeoJson => (
            "application/geo+json",
            geojson(vehicle, source, from, to, rows).to_string(),
        ),
        Format::Csv => ("text/csv; charset=utf-8", csv(rows)),
    };
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type),
            (
                axum::http::HeaderName::from_static("x-fleetmq-source"),
                source.as_str(),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = vec![json!({"vehicle": "a,b", "ts": 5, "lat": 1.5, "lon": 2.0, "trip": "x\"y"})];
        let text = csv(&rows);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0].split(',').count(), 15);
        assert_eq!(lines[1], "\"a,b\",5,1.5,2.0,,,,,,,\"x\"\"y\",,,,");
        assert!(Format::parse(Some("xml")).is_err());
    }
}
