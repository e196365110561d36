//! `GET /api/v1/vehicles/{id}/stops?limit=N` (docs/http-api.md#get-apiv1vehiclesidstops): the
//! next stops of a vehicle with their ETAs, and on a trip with a timetable their scheduled
//! times and delay — what the map's vehicle panel lists. The broker computes them
//! ([`BrokerPort::upcoming_stops`](crate::BrokerPort::upcoming_stops)); a broker that does not,
//! or whose stops are of another route or trip than the state's, gives the state's `next_stop`
//! alone.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;

/// Stops listed when the query names no `limit`.
const DEFAULT_LIMIT: usize = 5;
/// Most stops one answer lists.
const MAX_LIMIT: usize = 50;

/// Query of `GET /api/v1/vehicles/{id}/stops`.
#[derive(Debug, Deserialize)]
pub struct StopsQuery {
    limit: Option<String>,
}

fn limit(q: Result<Query<StopsQuery>, QueryRejection>) -> Result<usize, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

/// `GET /api/v1/vehicles/{id}/stops`: `{"vehicle","ts","route","trip","delay_s","stops":[...]}`,
/// each stop as the state's `next_stop` (`id`, `name`, `distance_m`, `eta`, `scheduled`) plus
/// its predicted `delay_s` on a timetable.
///
/// # Errors
/// 400 for a bad `limit`; 404 for a vehicle unknown or not readable by the caller.
pub async fn upcoming(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<StopsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let limit = limit(q)?;
    let p = st
        .hub
        .prepared(&id)
        .filter(|p| {
            let s = &p.state;
            caller
                .0
                .may_read_vehicle(&s.vehicle, s.route.as_deref(), s.trip.as_deref())
        })
        .ok_or_else(|| AppError::NotFound(format!("no vehicle {id:?}")))?;
    let s = &p.state;
    // Only stops of the state's own route and trip: the caller's rights were checked on those
    // (a tracker read from another node's last write may still be on the previous trip).
    let stops = st
        .port
        .upcoming_stops(&id, limit)
        .await
        .filter(|u| {
            u.route.as_deref() == s.route.as_deref() && u.trip.as_deref() == s.trip.as_deref()
        })
        .map_or_else(|| s.next_stop.iter().cloned().collect(), |u| u.stops);
    Ok(Json(json!({
        "vehicle": s.vehicle,
        "ts": s.ts,
        "route": s.route,
        "trip": s.trip,
        "delay_s": s.delay_s,
        "stops": stops,
    })))
}
