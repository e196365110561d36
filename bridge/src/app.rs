//! Assembles the HTTP application: [`BridgeConfig`], the router of every docs/http-api.md#endpoints
//! endpoint with its timeout and body-limit layers ([`app`]). The server loop is `server`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::error::AppError;
use crate::hub::Hub;
use crate::port::BrokerPort;
use crate::routes::Routes;
use crate::{gtfsrt, history, ingest, map, mqtt_ws, ops, ratelimit, rest, routes, sse, stops, ws};

/// Configuration of the HTTP side.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// FeatureCollection of routes (LineStrings), stops (Points) and geofences (Polygons), precomputed
    /// by the broker. A feature belongs to route `R` when its properties say `route_id`/`route` = `R`
    /// or `routes` contains `R`; a (Multi)LineString also by its own `id`.
    pub routes_geojson: Value,
    /// Optional raster tile URL template (`{z}`, `{x}`, `{y}`) for the map background; off by default
    /// so the map works offline.
    pub tile_url: Option<String>,
    /// Limit on producing a response (not on streams once started).
    pub request_timeout: Duration,
    /// Largest request body, bytes (every endpoint but the location post).
    pub body_limit: usize,
    /// Largest body of `POST /api/v1/vehicles/{id}/location`, bytes; the broker sets its
    /// `--max-packet-size`, the limit of the same payload over MQTT.
    pub ingest_body_limit: usize,
    /// Largest `/ws` message from a client, bytes.
    pub ws_max_message: usize,
    /// Largest `/mqtt` WebSocket message from a client, bytes (an MQTT packet may span several).
    pub mqtt_max_message: usize,
    /// Most states in one list or track response.
    pub max_list: usize,
    /// Longest ping message, characters.
    pub max_ping_message: usize,
    /// The server pings `/ws` clients this often, so that dead peers are noticed.
    pub ws_ping_interval: Duration,
    /// A `/ws` client from which nothing (not even a pong) arrived for this long is dropped.
    pub ws_idle_timeout: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            routes_geojson: json!({"type": "FeatureCollection", "features": []}),
            tile_url: None,
            request_timeout: Duration::from_secs(10),
            body_limit: 16 * 1024,
            ingest_body_limit: 1024 * 1024,
            ws_max_message: 64 * 1024,
            mqtt_max_message: 1024 * 1024 + 16,
            max_list: 10_000,
            max_ping_message: 1024,
            ws_ping_interval: Duration::from_secs(30),
            ws_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The live fleet and stream clients.
    pub hub: Hub,
    /// The broker.
    pub port: Arc<dyn BrokerPort>,
    /// Route GeoJSON, indexed.
    pub routes: Arc<Routes>,
    /// The configuration.
    pub config: Arc<BridgeConfig>,
}

/// Tells stream handlers that the server is shutting down (set by [`serve`]).
#[derive(Clone)]
pub struct ShutdownSignal(pub watch::Receiver<bool>);

impl ShutdownSignal {
    /// Resolves when the server starts shutting down; never without a signal (an app driven by
    /// `oneshot`, not by [`serve`]).
    pub async fn wait(signal: Option<ShutdownSignal>) {
        if let Some(ShutdownSignal(mut rx)) = signal {
            // An error means `serve` is gone without signalling: treat it like a shutdown too.
            let _ = rx.wait_for(|stopping| *stopping).await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// The router of every endpoint. Tests drive it with `oneshot`; [`serve`] runs it.
pub fn app(hub: Hub, port: Arc<dyn BrokerPort>, config: BridgeConfig) -> Router {
    let routes = Arc::new(Routes::new(&config.routes_geojson));
    let timeout = config.request_timeout;
    let body_limit = config.body_limit;
    let ingest_limit = config.ingest_body_limit;
    let state = AppState {
        hub,
        port,
        routes,
        config: Arc::new(config),
    };
    Router::new()
        .route("/", get(map::index))
        .route("/map.js", get(map::script))
        .route("/map.css", get(map::style))
        .route("/playback.js", get(map::playback))
        .route("/map/config.json", get(map::config))
        .route("/ws", get(ws::handler))
        .route("/mqtt", get(mqtt_ws::handler))
        .route("/api/v1/vehicles", get(rest::list_vehicles))
        .route("/api/v1/vehicles/{id}", get(rest::get_vehicle))
        .route("/api/v1/vehicles/{id}/track", get(rest::track))
        .route("/api/v1/vehicles/{id}/ping", post(rest::ping))
        .route("/api/v1/vehicles/{id}/stops", get(stops::upcoming))
        .route(
            "/api/v1/vehicles/{id}/history",
            get(history::vehicle_history),
        )
        .route("/api/v1/events", get(history::events))
        .route("/api/v1/stream", get(sse::handler))
        .route("/api/v1/cluster", get(ops::cluster))
        .route("/api/v1/routes", get(routes::list))
        .route("/api/v1/routes/{id}", get(routes::one))
        .route("/gtfs-rt/{feed}", get(gtfsrt::feed))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        // The location post carries batches, up to the MQTT packet limit: its own body limit,
        // under the same timeout (which also ends a body that trickles in).
        .merge(
            Router::new()
                .route("/api/v1/vehicles/{id}/location", post(ingest::location))
                .layer(RequestBodyLimitLayer::new(ingest_limit)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(from_fn_with_state(state.clone(), ratelimit::limit))
        .layer(map_response(json_errors))
        .with_state(state)
}

/// Gives the plain-text 408 and 413 answers of the tower-http layers the JSON error body that
/// every other error has (the broker's OsmAnd listener uses it too).
pub async fn json_errors(res: Response) -> Response {
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    match res.status() {
        StatusCode::REQUEST_TIMEOUT if !is_json => {
            AppError::Timeout("the request took too long".into()).into_response()
        }
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => {
            AppError::PayloadTooLarge("the request body is too large".into()).into_response()
        }
        _ => res,
    }
}
