//! `GET /gtfs-rt/{feed}` (docs/gtfs-realtime.md): the broker's GTFS-Realtime feeds, protobuf
//! (`application/x-protobuf`) or, with `?format=json`, JSON. The feeds describe the whole fleet,
//! so an authenticated caller must be allowed to read every vehicle (403 otherwise).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;

/// Query of `GET /gtfs-rt/{feed}`.
#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    format: Option<String>,
}

/// `GET /gtfs-rt/{feed}`.
///
/// # Errors
/// 400 for an unknown `format`, 403 for a caller limited to some vehicles, 404 for an unknown
/// feed.
pub async fn feed(
    State(st): State<AppState>,
    caller: Caller,
    Path(feed): Path<String>,
    q: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let json = match q.format.as_deref() {
        None | Some("protobuf") | Some("pb") => false,
        Some("json") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "format {other:?}: expected json or protobuf"
            )));
        }
    };
    if !caller.0.reads_everything() {
        return Err(AppError::Forbidden(
            "the GTFS-Realtime feeds cover the whole fleet: this token may not read it".into(),
        ));
    }
    let body = st.port.gtfs_rt(&feed, json).ok_or_else(|| {
        AppError::NotFound(format!(
            "no feed {feed:?}: vehicle-positions, trip-updates or alerts"
        ))
    })?;
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    // The feed changes every second; a cache in between must not serve it longer.
    Ok((
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "max-age=1")],
        body,
    )
        .into_response())
}
