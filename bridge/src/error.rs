//! The one HTTP error type: [`AppError`] maps every failure of a handler onto a status code and the
//! docs/http-api.md#errors body `{"error":{"code":"...","message":"..."}}`, logging internals
//! without exposing them.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::port::{AuthError, IngestError, PortError};

/// A failed HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Unknown vehicle, route or path: 404 `NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// Malformed query, body or path parameter: 400 `BAD_REQUEST`.
    #[error("{0}")]
    BadRequest(String),
    /// An invalid location payload: 400 `INVALID` with the offending `field` in the error object.
    #[error("{message}")]
    Invalid {
        /// The field named in the body (`lat`, `ts`, `payload`, ...).
        field: String,
        /// What is wrong, sent to the client.
        message: String,
    },
    /// Over a rate limit: 429 `RATE_LIMITED` with `Retry-After` in whole seconds.
    #[error("{message}")]
    RateLimited {
        /// Sent to the client.
        message: String,
        /// The `Retry-After` header, seconds (at least 1).
        retry_after_s: u64,
    },
    /// No or a bad token: 401 `UNAUTHORIZED`.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed: 403 `FORBIDDEN`.
    #[error("{0}")]
    Forbidden(String),
    /// Body larger than the configured limit: 413 `PAYLOAD_TOO_LARGE`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request did not finish within the configured time: 408 `TIMEOUT`.
    #[error("{0}")]
    Timeout(String),
    /// The broker cannot serve this now: 503 `UNAVAILABLE`.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the message is logged, not sent: 500 `INTERNAL`.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            AppError::Invalid { .. } => (StatusCode::BAD_REQUEST, "INVALID"),
            AppError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AppError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            AppError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "TIMEOUT"),
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<PortError> for AppError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Rejected(m) => AppError::BadRequest(m),
            PortError::Unavailable(m) => AppError::Unavailable(m),
            PortError::Internal(m) => AppError::Internal(m),
        }
    }
}

impl From<IngestError> for AppError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid { field, message } => AppError::Invalid { field, message },
            IngestError::TooLarge(m) => AppError::PayloadTooLarge(m),
            e @ IngestError::RateLimited { retry_after } => AppError::RateLimited {
                message: e.to_string(),
                retry_after_s: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
            IngestError::Unavailable(m) => AppError::Unavailable(m),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        AppError::Unauthorized(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            AppError::Internal(m) => {
                tracing::error!(error = %m, "internal error in HTTP handler");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = match &self {
            AppError::Invalid { field, .. } => {
                json!({"error": {"code": code, "field": field, "message": message}})
            }
            _ => json!({"error": {"code": code, "message": message}}),
        };
        let mut res = (status, Json(body)).into_response();
        match &self {
            AppError::Unauthorized(_) => {
                res.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::RateLimited { retry_after_s, .. } => {
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        res
    }
}
