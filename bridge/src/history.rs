//! `GET /api/v1/vehicles/{id}/history` and `GET /api/v1/events` (docs/history.md): from the
//! broker's history store (PostgreSQL) when it has one, else from Redis (the track stream) or the
//! hub's memory (track ring, recent events) — the answer's `"source"` says which.
//!
//! Times are Unix milliseconds or ISO 8601 (`2026-11-30T08:10:00Z`, or a date for its UTC
//! midnight); `from` defaults to 0, `to` to now. At most `limit` rows (default and largest:
//! [`DEFAULT_LIMIT`] / [`MAX_LIMIT`]) in time order from `from`. A caller sees only rows of
//! vehicles it may read, judged per row by the row's route and trip, so a rider sees its own
//! trip's span of a vehicle and nothing else.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::history_format::{Format, render};
use crate::recent::event_route_trip;

/// Rows per answer when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 10_000;
/// Largest `limit` accepted (a bigger one is a 400): bounds the memory of one answer.
pub const MAX_LIMIT: usize = 100_000;

/// What `/history` asks the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub vehicle: String,
    /// Unix ms, inclusive.
    pub from_ms: i64,
    /// Unix ms, inclusive.
    pub to_ms: i64,
    pub limit: usize,
}

/// What `/events` asks the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsQuery {
    pub vehicle: Option<String>,
    pub kind: Option<String>,
    /// Unix ms, inclusive.
    pub from_ms: i64,
    /// Unix ms, inclusive.
    pub to_ms: i64,
    pub limit: usize,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Postgres,
    Redis,
    Memory,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Postgres => "postgres",
            Source::Redis => "redis",
            Source::Memory => "memory",
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix ms, or ISO 8601 with an offset, or a bare date (its UTC midnight).
fn parse_time(name: &str, s: &str) -> Result<i64, AppError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    // An unencoded `+01:00` arrives as ` 01:00` (a `+` in a query string is a space).
    let s = &s.replace(' ', "+");
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(z) = s
        .parse::<jiff::civil::Date>()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
    {
        return Ok(z.timestamp().as_millisecond());
    }
    Err(AppError::BadRequest(format!(
        "{name} must be Unix milliseconds or ISO 8601 (e.g. 2026-11-30T08:10:00Z)"
    )))
}

fn some(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// `from`, `to` and `limit` checked: 400 for a malformed value or `from` after `to`.
fn range(
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
) -> Result<(i64, i64, usize), AppError> {
    let from = some(from).map_or(Ok(0), |s| parse_time("from", &s))?;
    let to = some(to).map_or(Ok(now_ms()), |s| parse_time("to", &s))?;
    if from > to {
        return Err(AppError::BadRequest("from must not be after to".into()));
    }
    let limit = match some(limit) {
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(AppError::BadRequest(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}"
                )));
            }
        },
        None => DEFAULT_LIMIT,
    };
    Ok((from, to, limit))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(t)| t)
        .map_err(|e| AppError::BadRequest(e.body_text()))
}

/// Query of `/history`.
#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    limit: Option<String>,
}

/// The columns of the `fleetmq_positions` table, in its order: the fields of a stored state that
/// are history (a Redis track entry is a whole state) and the CSV header.
pub(crate) const COLUMNS: [&str; 15] = [
    "vehicle",
    "ts",
    "lat",
    "lon",
    "raw_lat",
    "raw_lon",
    "speed",
    "heading",
    "accuracy",
    "route",
    "trip",
    "on_route",
    "off_route_m",
    "delay_s",
    "received_at",
];

/// A state (or track point) as a history row: only the columns, `vehicle` filled in.
fn as_row(vehicle: &str, v: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("vehicle".into(), json!(vehicle));
    if let Value::Object(mut o) = v {
        for c in &COLUMNS[1..] {
            if let Some(x) = o.remove(*c).filter(|x| !x.is_null()) {
                out.insert((*c).into(), x);
            }
        }
    }
    Value::Object(out)
}

/// `GET /api/v1/vehicles/{id}/history?from=&to=&format=json|geojson|csv&limit=`.
///
/// # Errors
/// 400 for a bad parameter or range, 404 when the caller may read none of it, 503 when the
/// store failed.
pub async fn vehicle_history(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let format = Format::parse(some(q.format).as_deref())?;
    let (from_ms, to_ms, limit) = range(q.from, q.to, q.limit)?;
    let hq = HistoryQuery {
        vehicle: id.clone(),
        from_ms,
        to_ms,
        limit,
    };
    let (source, rows) = match st.port.history(&hq).await {
        Some(rows) => (Source::Postgres, rows?),
        None => match st.port.track(&id, from_ms, to_ms).await {
            Some(states) => {
                let mut rows: Vec<Value> = states?.into_iter().map(|v| as_row(&id, v)).collect();
                rows.truncate(limit);
                (Source::Redis, rows)
            }
            None => {
                let points = st
                    .hub
                    .track(&id, from_ms, to_ms, usize::MAX)
                    .unwrap_or_default();
                let rows = points
                    .iter()
                    .take(limit)
                    .filter_map(|p| serde_json::to_value(p).ok())
                    .map(|v| as_row(&id, v))
                    .collect();
                (Source::Memory, rows)
            }
        },
    };
    // A vehicle the caller may not read at all is unknown to it; otherwise rows are judged one
    // by one (a rider's trip ends, the vehicle goes on).
    let latest = st.hub.latest(&id);
    let readable = match &latest {
        Some(s) => caller
            .0
            .may_read_vehicle(&id, s.route.as_deref(), s.trip.as_deref()),
        None => caller.0.may_read_vehicle(&id, None, None),
    };
    let rows: Vec<Value> = if caller.0.reads_everything() {
        rows
    } else {
        let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        rows.into_iter()
            .filter(|r| {
                caller
                    .0
                    .may_read_fix(&id, text(r, "route").as_deref(), text(r, "trip").as_deref())
            })
            .collect()
    };
    if rows.is_empty() && !readable {
        return Err(AppError::NotFound(format!("no vehicle {id:?}")));
    }
    Ok(render(format, &id, source, from_ms, to_ms, &rows))
}

/// Query of `/events`.
#[derive(Debug, Deserialize)]
pub struct EventsParams {
    vehicle: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/events?vehicle=&kind=&from=&to=&limit=`: `{"source","count","events":[...]}`.
///
/// # Errors
/// 400 for a bad parameter or range, 503 when the store failed.
pub async fn events(
    State(st): State<AppState>,
    caller: Caller,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let (from_ms, to_ms, limit) = range(q.from, q.to, q.limit)?;
    let kind = some(q.kind);
    if kind
        .as_ref()
        .is_some_and(|k| k.len() > 64 || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        return Err(AppError::BadRequest(
            "kind must be an event kind such as deviation or stop_arrival".into(),
        ));
    }
    let eq = EventsQuery {
        vehicle: some(q.vehicle),
        kind,
        from_ms,
        to_ms,
        limit,
    };
    let (source, mut events) = match st.port.events(&eq).await {
        Some(events) => (Source::Postgres, events?),
        None => {
            let kept = st.hub.recent_events().oldest(limit, |e| {
                e.ts >= from_ms
                    && e.ts <= to_ms
                    && eq.vehicle.as_deref().is_none_or(|v| v == e.vehicle)
                    && eq.kind.as_deref().is_none_or(|k| k == e.kind.as_str())
            });
            let events = kept
                .iter()
                .filter_map(|e| serde_json::to_value(&**e).ok())
                .collect();
            (Source::Memory, events)
        }
    };
    if !caller.0.reads_everything() {
        events.retain(|v| {
            serde_json::from_value::<geo_engine::Event>(v.clone()).is_ok_and(|e| {
                let (route, trip) = event_route_trip(&st.hub, &e);
                caller
                    .0
                    .may_read_fix(&e.vehicle, route.as_deref(), trip.as_deref())
            })
        });
    }
    let body = json!({
        "source": source.as_str(),
        "from": from_ms,
        "to": to_ms,
        "count": events.len(),
        "events": events,
    });
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_or_iso() {
        assert_eq!(
            parse_time("from", "1764460800000").ok(),
            Some(1_764_460_800_000)
        );
        assert_eq!(
            parse_time("from", "2025-11-30T00:00:00Z").ok(),
            Some(1_764_460_800_000)
        );
        assert_eq!(
            parse_time("from", "2025-11-30T01:00:00+01:00").ok(),
            Some(1_764_460_800_000)
        );
        assert_eq!(
            parse_time("from", "2025-11-30T01:00:00 01:00").ok(),
            Some(1_764_460_800_000)
        );
        assert_eq!(
            parse_time("from", "2025-11-30").ok(),
            Some(1_764_460_800_000)
        );
        assert!(parse_time("from", "yesterday").is_err());
        assert!(range(Some("10".into()), Some("5".into()), None).is_err());
        assert!(range(None, None, Some("0".into())).is_err());
        assert_eq!(
            range(Some("1".into()), Some("2".into()), None).ok(),
            Some((1, 2, DEFAULT_LIMIT))
        );
    }
}
