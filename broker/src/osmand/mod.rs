//! `--osmand` / `--osmands`: the OsmAnd protocol that Traccar Client and OsmAnd's online tracking
//! speak (docs/ingest-http.md), so that phones people already own can report a vehicle's position.
//!
//! Any path, `GET` or `POST`: the query string, else the body — JSON (Traccar Client 9+) when it
//! starts with `{` or the content type says JSON, else a form. Answers: `200` with an empty body
//! once the report is in the pipeline (duplicates and jitter included, as for MQTT), `400`
//! for bad input, `404` for a device not let in ([`devices`]), `413` for a body over
//! `--max-packet-size` or a batch over [`MAX_BATCH`](crate::ingest::MAX_BATCH), `429` with `Retry-After` over the vehicle's
//! `--max-publish-rate`, `408` for a request not complete within [`REQUEST_TIMEOUT`] (slow
//! bodies), `405` for other methods. Errors carry the usual JSON body.
//!
//! hyper serves each connection on one task, keep-alive included; a request is decoded and run
//! through the ingest [`Gate`] on that task, never on one of its own.
//!
//! # Layout
//! - `decode`: query, form and JSON requests into fixes.
//! - `devices`: which device ids may report.

mod decode;
pub mod devices;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use fleetmq_bridge::{AppError, IngestError};
use geo_engine::Rejection;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::ingest::{Gate, Source, now_ms};
use crate::metrics::Metrics;
pub use devices::Devices;

/// Longest a request (headers to last body byte) may take: a slow body gets 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handler needs.
pub struct Osmand {
    pub gate: Arc<Gate>,
    pub devices: Devices,
    pub metrics: Arc<Metrics>,
}

/// The OsmAnd application: one handler for every path, the body limit and the timeout.
pub fn app(osmand: Arc<Osmand>, body_limit: usize) -> Router {
    Router::new()
        .fallback(report)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(map_response(fleetmq_bridge::app::json_errors))
        .with_state(osmand)
}

async fn report(
    State(os): State<Arc<Osmand>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    if method != Method::GET && method != Method::POST {
        return Ok((StatusCode::METHOD_NOT_ALLOWED, [("allow", "GET, POST")]).into_response());
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(e.body_text()),
        _ => AppError::BadRequest(e.body_text()),
    })?;
    let decoded = match uri.query().filter(|q| !q.is_empty()) {
        Some(query) => decode::form(query.as_bytes(), now_ms()),
        None if is_json(&headers, &body) => decode::json(&body, now_ms()),
        None => decode::form(&body, now_ms()),
    };
    let report = decoded.map_err(|r| invalid(&os.metrics, r))?;
    if !os.devices.allows(&report.device) {
        return Err(AppError::NotFound(format!(
            "device {:?} is not known here",
            report.device
        )));
    }
    os.gate
        .fixes(&report.device, report.fixes, Source::Osmand)
        .await
        .map_err(|refused| AppError::from(IngestError::from(refused)))?;
    Ok(StatusCode::OK.into_response())
}

/// A request the decoder refused counts as a rejected update, like a bad MQTT payload.
fn invalid(metrics: &Metrics, r: Rejection) -> AppError {
    metrics.reject(Source::Osmand, r.reason.as_str());
    AppError::Invalid {
        field: r.field.to_owned(),
        message: r.message,
    }
}

/// Traccar Client 9 sends `Content-Type: application/json`; a body starting with `{` is JSON too.
fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    let declared = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    declared || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}
