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
const PLAYBACK_JS: &str = include_str!("../assets/playback.js");

/// Shown under the map whenever tiles are drawn: the tile URL is OpenStreetMap's by default, and
/// OpenStreetMap-based tile servers require the same credit.
const TILE_ATTRIBUTION: &str = "© OpenStreetMap contributors";
/// Where the attribution links to (OpenStreetMap's licence page).
const TILE_ATTRIBUTION_URL: &str = "https://www.openstreetmap.org/copyright";

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

/// `GET /playback.js`: history playback on the map (`playback.js` draws through the hooks
/// `map.js` exposes).
pub async fn playback() -> Response {
    asset("text/javascript; charset=utf-8", PLAYBACK_JS)
}

/// `GET /map.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", MAP_CSS)
}

/// `GET /map/config.json`: `{"tile_url": null | "https://.../{z}/{x}/{y}.png", "attribution",
/// "attribution_url"}` (both `null` without tiles).
pub async fn config(State(st): State<AppState>) -> Response {
    let tiles = st.config.tile_url.is_some();
    axum::Json(json!({
        "tile_url": st.config.tile_url,
        "attribution": tiles.then_some(TILE_ATTRIBUTION),
        "attribution_url": tiles.then_some(TILE_ATTRIBUTION_URL),
    }))
    .into_response()
}
