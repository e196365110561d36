//! Derives the bundled sample routes (`data/cairns.geojson`) from the TransLink Cairns GTFS feed
//! (2014) through the crate's own GTFS loader:
//!
//! `cargo run -p geo-engine --example derive_routes -- data/cairns_gtfs.zip geo-engine/data/cairns.geojson`
//!
//! For each chosen route it keeps the busiest shape and the shape that best returns from its
//! end, simplifies them (Douglas–Peucker, 3 m in local metres), and adds their stops and two
//! geofences (the City Pier terminus and the Sunbus depot).

use geo::{LineString, SimplifyIdx};
use geo_engine::Network;
use geo_engine::local::dist;
use serde_json::{Value, json};

/// GTFS route ids of the sample, with the short id they get in the bundle.
const ROUTES: &[(&str, &str)] = &[
    ("110-423", "110"),
    ("113-423", "113"),
    ("121-423", "121"),
    ("131-423", "131"),
    ("140-423", "140"),
];

/// Simplification tolerance, metres.
const EPSILON_M: f64 = 3.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = args.next().unwrap_or_else(|| "data/cairns_gtfs.zip".into());
    let output = args
        .next()
        .unwrap_or_else(|| "geo-engine/data/cairns.geojson".into());
    let net = Network::from_gtfs_zip(&std::fs::read(&input)?)?;
    println!("{input}: {}", net.summary());
    let text = serde_json::to_string(&derive(&net))?;
    std::fs::write(&output, &text)?;
    let back = Network::from_geojson(&text)?;
    println!("{output}: {} ({} bytes)", back.summary(), text.len());
    Ok(())
}

fn derive(net: &Network) -> Value {
    let mut features = Vec::new();
    for &(gtfs_id, short) in ROUTES {
        let Some(ri) = net.route_index(gtfs_id) else {
            eprintln!("route {gtfs_id} not in the feed; skipped");
            continue;
        };
        let route = &net.routes()[ri];
        let corridors = &route.corridors;
        let Some(&main) = corridors
            .iter()
            .max_by_key(|&&ci| (net.corridors()[ci].trips, std::cmp::Reverse(ci)))
        else {
            continue;
        };
        let m = &net.corridors()[main];
        let (m_start, m_end) = (m.points[0], m.points[m.points.len() - 1]);
        let back = corridors
            .iter()
            .copied()
            .filter(|&ci| ci != main)
            .min_by(|&a, &b| {
                let score = |ci: usize| {
                    let c = &net.corridors()[ci];
                    dist(c.points[0], m_end) + dist(c.points[c.points.len() - 1], m_start)
                };
                score(a).total_cmp(&score(b))
            });
        let chosen: Vec<usize> = std::iter::once(main).chain(back).collect();
        let name = route.name.trim_start_matches(short).trim().to_owned();
        for (k, &ci) in chosen.iter().enumerate() {
            let c = &net.corridors()[ci];
            let local: LineString<f64> = c.points.iter().map(|p| p.0).collect();
            let keep = local.simplify_idx(EPSILON_M);
            let coords: Vec<[f64; 2]> = keep
                .iter()
                .map(|&i| {
                    let at = c.coords[i];
                    [round6(at.x), round6(at.y)]
                })
                .collect();
            let shape_id = format!("{short}-{}", if k == 0 { "a" } else { "b" });
            features.push(json!({"type": "Feature",
                "properties": {"route_id": short, "name": name, "shape_id": shape_id, "corridor_m": 50,
                    "gtfs_route_id": gtfs_id, "gtfs_shape_id": c.id},
                "geometry": {"type": "LineString", "coordinates": coords}}));
            for (seq, cs) in c.stops.iter().enumerate() {
                let s = &net.stops()[cs.stop];
                features.push(json!({"type": "Feature",
                    "properties": {"stop_id": s.id, "route_id": short, "shape_id": shape_id, "name": s.name, "sequence": seq + 1},
                    "geometry": {"type": "Point", "coordinates": [s.position.x(), s.position.y()]}}));
            }
        }
    }
    features.push(square(
        "city-pier",
        "The Pier Cairns bus terminus",
        -16.92073,
        145.77886,
        90.0,
    ));
    features.push(square(
        "sunbus-depot",
        "Sunbus depot, Dunne Street",
        -16.82462,
        145.70369,
        120.0,
    ));
    json!({"type": "FeatureCollection",
        "attribution": "Derived from the TransLink Cairns GTFS feed (Queensland Department of Transport and Main Roads, 2014), CC BY 3.0 AU",
        "features": features})
}

/// A square geofence of half-side `half_m` metres around `(lat, lon)`.
fn square(id: &str, name: &str, lat: f64, lon: f64, half_m: f64) -> Value {
    let dlat = half_m / 111_195.0;
    let dlon = dlat / lat.to_radians().cos();
    let ring = [
        [lon - dlon, lat - dlat],
        [lon + dlon, lat - dlat],
        [lon + dlon, lat + dlat],
        [lon - dlon, lat + dlat],
        [lon - dlon, lat - dlat],
    ]
    .map(|[x, y]| [round6(x), round6(y)]);
    json!({"type": "Feature", "properties": {"geofence_id": id, "name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]}})
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
