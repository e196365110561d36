//! `fleetmq routes check FILE`: loads a route network the way `serve --routes` would and prints
//! one summary line, `routes: N, stops: N, geofences: N, corridors: N, segments: N`. An invalid
//! file exits 2 with one line naming it and its first bad feature.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::failure::Failure;

/// Validates `path` (GeoJSON file, GTFS zip or GTFS folder) and prints its summary.
///
/// # Errors
/// [`Failure::Config`] when the file is unreadable or not a valid route network.
pub fn check(path: &Path) -> Result<(), Failure> {
    let network = crate::routes::load(Some(path)).map_err(|e| {
        Failure::Config(format!(
            "{e}; fix it, or give a GeoJSON FeatureCollection or a GTFS zip/folder"
        ))
    })?;
    let s = network.summary();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "routes: {}, stops: {}, geofences: {}, corridors: {}, segments: {}",
        s.routes, s.stops, s.geofences, s.corridors, s.segments
    )
    .and_then(|()| out.flush())
    .context("writing to stdout")
    .map_err(Failure::Runtime)
}
