//! Reading the route network named by `--routes`: a GeoJSON file, a GTFS zip, or a GTFS folder
//! (`None`: the bundled Cairns routes). Parsing itself is geo-engine's; this module owns the
//! file system side and the error that names the file.

use std::path::Path;

use geo_engine::Network;

use crate::Error;

/// Adds the polygons of the GeoJSON file at `path` (`--zones`) to `net`'s geofences.
///
/// # Errors
/// The file is unreadable or not a FeatureCollection of polygons with ids; the error names the
/// file and the first bad feature.
pub fn add_zones(net: &mut Network, path: &Path) -> Result<usize, Error> {
    let fail = |message: String| Error::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    net.add_zones(&text).map_err(|e| fail(e.to_string()))
}

/// Loads the network at `path`, or the bundled one.
///
/// # Errors
/// The file or folder is unreadable, or its content is not a valid route network; the error
/// names the path and the first bad feature.
pub fn load(path: Option<&Path>) -> Result<Network, Error> {
    let Some(path) = path else {
        return Ok(Network::bundled());
    };
    let fail = |message: String| Error::File {
        path: path.to_owned(),
        message,
    };
    if path.is_dir() {
        let read = |name: &str| std::fs::read(path.join(name)).ok();
        return Network::from_gtfs_dir_files(&read).map_err(|e| fail(e.to_string()));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.starts_with(b"PK") {
        return Network::from_gtfs_zip(&bytes).map_err(|e| fail(e.to_string()));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| fail("not UTF-8 text, a zip or a folder".into()))?;
    Network::from_geojson(text).map_err(|e| fail(e.to_string()))
}
