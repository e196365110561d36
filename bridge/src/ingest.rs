//! `POST /api/v1/vehicles/{id}/location` (docs/ingest-http.md): a device or backend posts the
//! docs/topics-and-payloads.md#location-updates payload (one fix or a batch array) over HTTP, and
//! the broker runs it through the same pipeline as an MQTT publish to `fleet/{id}/location`.
//!
//! This module owns only the HTTP shape: the vehicle id, the caller's right to post for it (checked
//! before the body is read, so a refused client cannot make us buffer its body), the body, and the
//! mapping of the broker's answer onto 202/400/413/429. Parsing, validation, the batch maximum and
//! the per-vehicle rate are the broker's ([`BrokerPort::ingest_location`]).
//!
//! [`BrokerPort::ingest_location`]: crate::port::BrokerPort::ingest_location

use axum::body::{Body, to_bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::rest::valid_vehicle_id;

/// `POST /api/v1/vehicles/{id}/location`.
///
/// # Errors
/// 400 for a bad id or payload (`INVALID` with the field), 403 when the caller may not publish
/// for `id`, 413 over the body limit or the batch maximum, 429 over the publish rate, 408 for a
/// body that does not arrive within the request timeout, 503 when the broker cannot take it.
pub async fn location(
    State(st): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, AppError> {
    // A path that is not UTF-8 once percent-decoded gets the JSON error, not axum's plain text.
    let Path(id) = id.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if !valid_vehicle_id(&id) {
        return Err(AppError::BadRequest(
            "vehicle id must be 1-128 bytes without / + #".into(),
        ));
    }
    if !caller.0.may_post_location(&id) {
        return Err(AppError::Forbidden(format!(
            "you may not post the location of {id:?}"
        )));
    }
    let limit = st.config.ingest_body_limit;
    // The body-limit layer already refused a larger Content-Length; this bounds a chunked body.
    let body = to_bytes(body, limit)
        .await
        .map_err(|_| AppError::PayloadTooLarge(format!("the body is larger than {limit} bytes")))?;
    let done = st.port.ingest_location(&id, body).await?;
    let reply = json!({"accepted": done.accepted, "rejected": done.rejected});
    Ok((
        StatusCode::ACCEPTED,
        [(CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
        .into_response())
}
