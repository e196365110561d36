//! The vehicle REST endpoints of docs/http-api.md#rest: latest state, filtered/nearest lists, the
//! track, and the ping that the broker publishes to `fleet/{id}/ping`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::filter::Criteria;
use crate::fleet::{Near, Prepared};
use crate::grid::Bbox;
use geo_engine::VehicleState;

fn json_text(status: StatusCode, text: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], text).into_response()
}

fn states_array(states: &[Arc<Prepared>]) -> String {
    let mut out = String::from("[");
    for (i, p) in states.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(p.json());
    }
    out.push(']');
    out
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(t)| t)
        .map_err(|e| AppError::BadRequest(e.body_text()))
}

/// Whether the caller may read this vehicle (a vehicle it may not read is answered as unknown, so
/// that its existence does not leak).
fn may_read(caller: &Caller, s: &VehicleState) -> bool {
    caller
        .0
        .may_read_vehicle(&s.vehicle, s.route.as_deref(), s.trip.as_deref())
}

/// `GET /api/v1/vehicles/{id}`: the latest state.
///
/// # Errors
/// 404 for an unknown vehicle.
pub async fn get_vehicle(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let p = st
        .hub
        .prepared(&id)
        .filter(|p| may_read(&caller, &p.state))
        .ok_or_else(|| AppError::NotFound(format!("no vehicle {id:?}")))?;
    Ok(json_text(StatusCode::OK, p.json().to_string()))
}

/// Query of `GET /api/v1/vehicles`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    route: Option<String>,
    trip: Option<String>,
    bbox: Option<String>,
    near: Option<String>,
    radius_m: Option<String>,
    limit: Option<String>,
}

fn parse_near(s: &str) -> Result<(f64, f64), AppError> {
    let bad = || AppError::BadRequest("near must be lat,lon in degrees".into());
    let (lat, lon) = s.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !(lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon))
    {
        return Err(bad());
    }
    Ok((lat, lon))
}

/// `GET /api/v1/vehicles?route=&trip=&bbox=&near=lat,lon&radius_m=&limit=`: current states, nearest
/// first with `near`, else by id.
///
/// # Errors
/// 400 for a malformed parameter.
pub async fn list_vehicles(
    State(st): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let some = |s: Option<String>| s.filter(|s| !s.is_empty());
    let bbox = match some(q.bbox) {
        Some(s) => Some(Bbox::parse(&s).map_err(|e| AppError::BadRequest(e.to_string()))?),
        None => None,
    };
    let radius_m = match some(q.radius_m) {
        Some(s) => match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Some(r),
            _ => {
                return Err(AppError::BadRequest(
                    "radius_m must be a number of metres > 0".into(),
                ));
            }
        },
        None => None,
    };
    let near = match some(q.near) {
        Some(s) => {
            let (lat, lon) = parse_near(&s)?;
            Some(Near { lat, lon, radius_m })
        }
        None if radius_m.is_some() => {
            return Err(AppError::BadRequest("radius_m needs near=lat,lon".into()));
        }
        None => None,
    };
    let max = st.config.max_list;
    let limit = match some(q.limit) {
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n.min(max),
            _ => {
                return Err(AppError::BadRequest(
                    "limit must be a positive integer".into(),
                ));
            }
        },
        None => max,
    };
    let criteria = Criteria {
        vehicle: None,
        route: some(q.route).map(Arc::from),
        trip: some(q.trip).map(Arc::from),
        bbox,
    };
    let found = st
        .hub
        .select(&criteria, near, limit, caller.filter().as_deref());
    let text = format!(
        r#"{{"count":{},"vehicles":{}}}"#,
        found.len(),
        states_array(&found)
    );
    Ok(json_text(StatusCode::OK, text))
}

/// Query of `/track`.
#[derive(Debug, Deserialize)]
pub struct TrackQuery {
    from: Option<String>,
    to: Option<String>,
}

fn parse_ms(name: &str, v: Option<String>, default: i64) -> Result<i64, AppError> {
    match v.filter(|s| !s.is_empty()) {
        Some(s) => s
            .parse()
            .map_err(|_| AppError::BadRequest(format!("{name} must be Unix milliseconds"))),
        None => Ok(default),
    }
}

/// `GET /api/v1/vehicles/{id}/track?from=MS&to=MS`: recent processed fixes, oldest first, from the
/// broker's store if it has one, else from the hub's ring.
///
/// # Errors
/// 400 for bad times, 404 for a vehicle without a track, the broker's error otherwise.
pub async fn track(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<TrackQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let latest = st.hub.latest(&id);
    // A rider may read the track of a vehicle it no longer sees live (its trip ended less than
    // `--trip-ttl` ago): then the per-fix check below decides.
    let live = match &latest {
        Some(s) => may_read(&caller, s),
        None => caller.0.may_read_vehicle(&id, None, None),
    };
    let q = query(q)?;
    let from = parse_ms("from", q.from, 0)?;
    let to = parse_ms("to", q.to, i64::MAX)?;
    if from > to {
        return Err(AppError::BadRequest("from must not be after to".into()));
    }
    let max = st.config.max_list;
    let mut fixes: Vec<Value> = match st.port.track(&id, from, to).await {
        Some(Ok(v)) => {
            if v.is_empty() && latest.is_none() && live {
                return Err(AppError::NotFound(format!("no track for vehicle {id:?}")));
            }
            v
        }
        Some(Err(e)) => return Err(e.into()),
        None => {
            let points = st
                .hub
                .track(&id, from, to, usize::MAX)
                .ok_or_else(|| AppError::NotFound(format!("no vehicle {id:?}")))?;
            points
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect()
        }
    };
    if !caller.0.reads_everything() {
        // docs/security.md: a rider of a trip reads that trip's fixes only, never an earlier
        // trip's.
        let field = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).map(str::to_owned);
        fixes.retain(|f| {
            caller.0.may_read_fix(
                &id,
                field(f, "route").as_deref(),
                field(f, "trip").as_deref(),
            )
        });
        if fixes.is_empty() && !live {
            return Err(AppError::NotFound(format!("no vehicle {id:?}")));
        }
    }
    if fixes.len() > max {
        fixes.drain(..fixes.len() - max);
    }
    let body = json!({"vehicle": id, "count": fixes.len(), "fixes": fixes});
    Ok(json_text(StatusCode::OK, body.to_string()))
}

/// Whether `id` can be a topic level (`fleet/{id}/ping`).
/// A vehicle id usable in a topic level: 1-128 bytes without `/`, `+`, `#` or NUL.
pub(crate) fn valid_vehicle_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.contains(['/', '+', '#', '\0'])
}

/// `POST /api/v1/vehicles/{id}/ping` with `{"message":"..."}`: the broker publishes
/// `{"message","ts"}` QoS 1 to `fleet/{id}/ping`; 202.
///
/// # Errors
/// 400 for a bad id or body, 413 for a body over the limit, 503 when the broker cannot take it.
pub async fn ping(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(e.body_text()),
        _ => AppError::BadRequest(e.body_text()),
    })?;
    if !caller.0.may_ping(&id) {
        return Err(AppError::Forbidden(format!("you may not ping {id:?}")));
    }
    if !valid_vehicle_id(&id) {
        return Err(AppError::BadRequest(
            "vehicle id must be 1-128 bytes without / + #".into(),
        ));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("body must be JSON: {e}")))?;
    let max = st.config.max_ping_message;
    let message = match v.get("message") {
        Some(Value::String(m)) if !m.is_empty() && m.chars().count() <= max => m.clone(),
        Some(Value::String(_)) => {
            return Err(AppError::BadRequest(format!(
                "message must be 1 to {max} characters"
            )));
        }
        _ => {
            return Err(AppError::BadRequest(
                r#"body must be {"message":"..."}"#.into(),
            ));
        }
    };
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let payload = json!({"message": message, "ts": ts}).to_string();
    st.port.ping(&id, Bytes::from(payload))?;
    let reply = json!({"status": "accepted", "topic": format!("fleet/{id}/ping")});
    Ok(json_text(StatusCode::ACCEPTED, reply.to_string()))
}
