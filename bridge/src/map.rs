//! The live map page at `/`: static files compiled into the binary (no CDN, no third-party script)
//! and its small configuration (the optional raster tile URL template).

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const MAP_JS: &str = include_str!("../assets/map.js");
const MAP_CSS: &str = include_str!("../assets/map.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /map.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", MAP_JS)
}

/// `GET /map.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", MAP_CSS)
}

/// `GET /map/config.json`: `{"tile_url": null | "https://.../{z}/{x}/{y}.png"}`.
pub async fn config(State(st): State<AppState>) -> Response {
    axum::Json(json!({"tile_url": st.config.tile_url})).into_response()
}
