//! Route loaders on the real Cairns GTFS feed and the bundled GeoJSON.

use std::io::Read;

use geo_engine::{LoadError, Network};

fn feed() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip")
}

#[test]
fn gtfs_zip_loads_the_cairns_network() {
    let net = Network::from_gtfs_zip(&feed()).unwrap();
    let s = net.summary();
    println!("{s}");
    assert_eq!(s.routes, 22);
    assert_eq!(s.stops, 416);
    assert!(s.corridors >= 22 && s.segments > 10_000, "{s}");
    let r = &net.routes()[net.route_index("110-423").unwrap()];
    assert_eq!(r.name, "110 City - Palm Cove");
    // Each corridor's stops are in order along it.
    for c in net.corridors() {
        assert!(
            c.stops
                .windows(2)
                .all(|w| w[0].progress_m <= w[1].progress_m),
            "{}",
            c.id
        );
        assert!(c.stops.len() >= 2, "{}", c.id);
    }
    assert!(
        net.trip_corridor("CNS2014-CNS_MUL-Weekday-00-4165878")
            .is_some()
    );
}

#[test]
fn gtfs_folder_loads_like_the_zip() {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(feed())).unwrap();
    let mut files = std::collections::HashMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        files.insert(f.name().to_owned(), bytes);
    }
    let net = Network::from_gtfs_dir_files(&|name| files.get(name).cloned()).unwrap();
    assert_eq!(
        net.summary(),
        Network::from_gtfs_zip(&feed()).unwrap().summary()
    );
    let e = Network::from_gtfs_dir_files(&|name| {
        if name == "trips.txt" {
            None
        } else {
            files.get(name).cloned()
        }
    })
    .unwrap_err();
    assert!(e.to_string().contains("trips.txt"), "{e}");
}

#[test]
fn bad_gtfs_is_an_error() {
    assert!(matches!(
        Network::from_gtfs_zip(b"not a zip"),
        Err(LoadError::Gtfs(_))
    ));
    let mut half = feed();
    half.truncate(half.len() / 2);
    assert!(Network::from_gtfs_zip(&half).is_err());
}

#[test]
fn bundled_routes_load_and_round_trip() {
    let net = Network::bundled();
    let s = net.summary();
    assert!(
        (4..=6).contains(&s.routes) && s.geofences == 2 && s.stops > 50,
        "{s}"
    );
    let text = include_str!("../data/cairns.geojson");
    assert!(text.len() < 300_000);
    assert_eq!(Network::from_geojson(text).unwrap().summary(), s);
    let again = Network::from_geojson(&net.routes_geojson().to_string()).unwrap();
    assert_eq!(again.summary(), s);
    for id in net.route_ids() {
        let fc = net.route_geojson(id).unwrap();
        assert!(fc["features"].as_array().unwrap().len() > 2);
    }
}
