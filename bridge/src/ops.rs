//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the broker's readiness),
//! `/metrics` (the broker's metrics followed by the bridge's) and `/api/v1/cluster` (the live
//! nodes).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::port::Readiness;

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 ready or degraded (with the reason), 503 not ready.
pub async fn readyz(State(st): State<AppState>) -> Response {
    match st.port.readiness() {
        Readiness::Ready => Json(json!({"status": "ready"})).into_response(),
        Readiness::Degraded(reason) => {
            Json(json!({"status": "degraded", "reason": reason})).into_response()
        }
        Readiness::NotReady(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut out = String::new();
    st.port.write_metrics(&mut out);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    st.hub.metrics().render(st.hub.len(), &mut out);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

/// `GET /api/v1/cluster`: `{"nodes":[...]}`, for clients that read every vehicle (operators,
/// integrators; anyone without authentication).
///
/// # Errors
/// 403 for a client limited to some vehicles (a rider).
pub async fn cluster(State(st): State<AppState>, caller: Caller) -> Result<Response, AppError> {
    if !caller.0.reads_everything() {
        return Err(AppError::Forbidden(
            "the cluster listing is for operators and integrators".into(),
        ));
    }
    Ok(Json(json!({ "nodes": st.port.cluster() })).into_response())
}
