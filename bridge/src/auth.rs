//! Who is calling: the [`Caller`] extractor takes a request's bearer token (`Authorization: Bearer`
//! or `?token=`, docs/http-api.md#authentication), has the broker authenticate it, and yields what
//! the client may access; a refused token is a 401 before any handler runs.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::AppError;
use crate::port::Access;

/// The authenticated caller of a request.
pub struct Caller(pub Arc<dyn Access>);

impl Caller {
    /// The access to filter by, `None` when it reads everything (no per-message check needed).
    pub fn filter(&self) -> Option<Arc<dyn Access>> {
        (!self.0.reads_everything()).then(|| self.0.clone())
    }

    /// Resolves when the caller's token expires (never without an expiry): the end of its
    /// WebSocket and SSE streams.
    pub fn expiry(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let deadline = self.0.expires_at().map(|at| {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The bearer token of a request: the `Authorization` header, else the `token` query parameter.
pub(crate) fn token(parts: &Parts) -> Result<Option<String>, AppError> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let bad =
            || AppError::Unauthorized("the Authorization header must be \"Bearer <token>\"".into());
        let value = value.to_str().map_err(|_| bad())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
            return Err(bad());
        }
        return Ok(Some(rest.trim().to_owned()));
    }
    match Query::<TokenQuery>::try_from_uri(&parts.uri) {
        Ok(Query(q)) => Ok(q.token.filter(|t| !t.is_empty())),
        // A malformed query string is the handler's to report; it carries no usable token.
        Err(_) => Ok(None),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, AppError> {
        let token = token(parts)?;
        Ok(Caller(st.port.authenticate(token.as_deref())?))
    }
}
