//! Errors of the route loaders. Rejections of location updates are in `validate`.

/// Why a route file could not be loaded. The message names the first bad feature or file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not a GeoJSON FeatureCollection.
    #[error("expected a GeoJSON FeatureCollection: {0}")]
    NotFeatureCollection(String),
    /// One feature is invalid; `index` counts from 0 in the `features` array.
    #[error("feature {index}{}: {reason}", .id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Feature {
        /// Position in `features`.
        index: usize,
        /// Its `route_id`/`stop_id`/`geofence_id`, when it has one.
        id: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// The GTFS feed could not be read or is inconsistent.
    #[error("GTFS: {0}")]
    Gtfs(String),
    /// The file holds no usable route.
    #[error("no routes with at least two distinct points")]
    NoRoutes,
}
