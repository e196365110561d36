//! Operator thresholds per route (route file properties) and `--zones` polygons on a GTFS
//! network.

use geo_engine::{EventKind, Fix, Network, Outcome, PipelineConfig, Tracker};

/// Two parallel east-west routes 2 km apart; route "fast" flags a deviation after one fix.
const ROUTES: &str = r#"{"type":"FeatureCollection","features":[
  {"type":"Feature","properties":{"route_id":"fast","off_route_fixes":1,"stop_radius_m":12},
   "geometry":{"type":"LineString","coordinates":[[145.70,-16.90],[145.75,-16.90]]}},
  {"type":"Feature","properties":{"route_id":"slow"},
   "geometry":{"type":"LineString","coordinates":[[145.70,-16.92],[145.75,-16.92]]}}
]}"#;

fn deviation_after(net: &Network, route: &str, lat: f64) -> usize {
    let cfg = PipelineConfig::default();
    let mut t = Tracker::new(route);
    let mut n = 0;
    for i in 0..12 {
        // Along the line for 6 fixes, then 300 m north of it.
        let off = if i < 6 { 0.0 } else { 0.0027 };
        let at = geo::Point::new(145.71 + i as f64 * 0.0003, lat + off);
        let mut f = Fix::new(at, 1_000_000 + i * 5_000);
        f.route = Some(route.into());
        if let Ok(Outcome::Forwarded { events, .. }) =
            t.process(net, &cfg, f, 1_000_000 + i * 5_000)
        {
            if i >= 6 {
                n += 1;
            }
            if events.iter().any(|e| e.kind == EventKind::Deviation) {
                return n;
            }
        }
    }
    usize::MAX
}

#[test]
fn a_route_sets_its_own_thresholds() {
    let net = Network::from_geojson(ROUTES).expect("loads");
    let t = net.route_thresholds("fast").expect("thresholds");
    assert_eq!((t.off_route_fixes, t.stop_radius_m), (Some(1), Some(12.0)));
    assert!(net.route_thresholds("slow").is_none());
    let cfg = PipelineConfig::default();
    assert_eq!(net.route_config(Some("fast"), &cfg).off_route_fixes, 1);
    assert_eq!(net.route_config(Some("slow"), &cfg).off_route_fixes, 3);
    assert_eq!(deviation_after(&net, "fast", -16.90), 1);
    assert_eq!(deviation_after(&net, "slow", -16.92), 3);
}

#[test]
fn a_route_sets_its_own_stale_after() {
    let routes = ROUTES.replace(
        "\"off_route_fixes\":1,",
        "\"off_route_fixes\":1,\"stale_after\":5,",
    );
    let net = Network::from_geojson(&routes).expect("loads");
    let cfg = PipelineConfig::default();
    assert_eq!(net.route_config(Some("fast"), &cfg).stale_after_ms, 5_000);
    assert_eq!(
        net.route_config(Some("slow"), &cfg).stale_after_ms,
        cfg.stale_after_ms
    );
    for (route, lat, quiet_for) in [("fast", -16.90, 5_000), ("slow", -16.92, 60_000)] {
        let mut t = Tracker::new(route);
        let mut f = Fix::new(geo::Point::new(145.71, lat), 1_000_000);
        f.route = Some(route.into());
        t.process(&net, &cfg, f, 1_000_000).expect("accepted");
        assert!(
            t.check_stale_on(&net, &cfg, 1_000_000 + quiet_for - 1)
                .is_none(),
            "{route}"
        );
        let (state, _) = t
            .check_stale_on(&net, &cfg, 1_000_000 + quiet_for)
            .unwrap_or_else(|| panic!("{route} offline after {quiet_for} ms"));
        assert_eq!(state.status, geo_engine::VehicleStatus::Offline);
    }
}

#[test]
fn a_bad_threshold_names_the_route() {
    let bad = ROUTES.replace("\"off_route_fixes\":1", "\"off_route_fixes\":-2");
    let e = Network::from_geojson(&bad).unwrap_err().to_string();
    assert!(e.contains("fast") && e.contains("off_route_fixes"), "{e}");
}

#[test]
fn zones_work_on_a_gtfs_network() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip");
    let mut net = Network::from_gtfs_zip(&bytes).expect("loads");
    let before = net.geofences().len();
    let s = &net.stops()[0];
    let s_at = s.position;
    let (lat, lon) = (s.position.y(), s.position.x());
    let zone = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature",
        "properties":{{"geofence_id":"depot","name":"Depot"}},
        "geometry":{{"type":"Polygon","coordinates":[[[{a},{b}],[{c},{b}],[{c},{d}],[{a},{d}],[{a},{b}]]]}}}}]}}"#,
        a = lon - 0.001,
        b = lat - 0.001,
        c = lon + 0.001,
        d = lat + 0.001
    );
    assert_eq!(net.add_zones(&zone), Ok(1));
    assert_eq!(net.geofences().len(), before + 1);
    let cfg = PipelineConfig::default();
    let mut t = Tracker::new("bus-z");
    let Ok(Outcome::Forwarded { events, .. }) = t.process(&net, &cfg, Fix::new(s_at, 5_000), 5_000)
    else {
        panic!("not forwarded");
    };
    assert!(
        events.iter().any(
            |e| e.kind == EventKind::GeofenceEnter && e.geofence_id.as_deref() == Some("depot")
        ),
        "{events:?}"
    );
    let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},
        "geometry":{"type":"Point","coordinates":[1,2]}}]}"#;
    assert!(net.add_zones(bad).is_err());
}
