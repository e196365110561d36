//! Timetables against the bundled Cairns GTFS (calendar 2014-05-26..2014-12-28, Australia/
//! Brisbane): a bus running 2 minutes late gets `delay_s` ≈ 120, a bus naming only its route gets
//! the right trip, and predictions follow stop order. Every clock is a 2014 fix time.

use geo_engine::schedule::calendar::{day_start_ms, from_yyyymmdd};
use geo_engine::{Fix, Network, Outcome, PipelineConfig, Tracker};

fn cairns() -> Network {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip");
    Network::from_gtfs_zip(&bytes).expect("loads")
}

/// Tuesday 2014-06-03, a weekday the Weekday-00 service runs.
const DATE: u32 = 20140603;

/// The trip of route 110-423 on the weekday service departing first after 08:00.
fn morning_trip(net: &Network) -> u32 {
    let s = net.schedule().expect("a timetable");
    let route = net.route_index("110-423").expect("route 110");
    *s.route_trips(route)
        .iter()
        .find(|&&t| {
            let trip = &s.trips[t as usize];
            s.calendar.runs(trip.service, from_yyyymmdd(DATE).unwrap())
                && s.times(t)[0].departure >= 8 * 3600
                && s.times(t).len() > 20
        })
        .expect("a morning trip")
}

/// Where the trip's timetable puts the vehicle `t_s` seconds into the service day: progress
/// along its corridor, metres.
fn scheduled_progress(net: &Network, trip: u32, t_s: f64) -> f64 {
    let s = net.schedule().unwrap();
    let (p, times) = (s.pattern(trip).unwrap(), s.times(trip));
    let n = times.len();
    if t_s <= times[0].departure as f64 {
        return p.progress_m[0] as f64;
    }
    for i in 0..n - 1 {
        let (dep, arr) = (times[i].departure as f64, times[i + 1].arrival as f64);
        if t_s < times[i].arrival as f64 {
            return p.progress_m[i] as f64;
        }
        if t_s <= dep {
            return p.progress_m[i] as f64;
        }
        if t_s < arr {
            let f = (t_s - dep) / (arr - dep).max(1.0);
            return p.progress_m[i] as f64 + f * (p.progress_m[i + 1] - p.progress_m[i]) as f64;
        }
    }
    p.progress_m[n - 1] as f64
}

/// Runs a bus `late_s` behind trip `trip`, one fix every 5 s, naming `trip` or only its route;
/// returns every forwarded state.
fn run_late(
    net: &Network,
    trip: u32,
    late_s: f64,
    declare_trip: bool,
) -> Vec<geo_engine::VehicleState> {
    let s = net.schedule().unwrap();
    let cfg = PipelineConfig::default();
    let day0 = day_start_ms(&s.tz, from_yyyymmdd(DATE).unwrap()).unwrap();
    let times = s.times(trip);
    let corridor = &net.corridors()[s.pattern(trip).unwrap().corridor as usize];
    let route = net.routes()[s.trips[trip as usize].route as usize]
        .id
        .clone();
    let (start, end) = (
        times[0].departure as f64,
        times[times.len() - 1].arrival as f64,
    );
    let mut t = Tracker::new("bus-late");
    let mut out = Vec::new();
    let mut t_s = start - 60.0;
    while t_s <= end + late_s - 30.0 {
        let prog = scheduled_progress(net, trip, t_s - late_s);
        let at = net.frame().to_geo(corridor.point_at(prog).0);
        let ts = day0 + (t_s * 1000.0) as i64;
        let mut fix = Fix::new(at, ts);
        fix.route = Some(route.to_string());
        if declare_trip {
            fix.trip = Some(s.trips[trip as usize].id.clone());
        }
        if let Ok(Outcome::Forwarded { state, .. }) = t.process(net, &cfg, fix, ts + 50) {
            out.push(state);
        }
        t_s += 5.0;
    }
    out
}

#[test]
fn timetable_is_loaded_compactly() {
    let net = cairns();
    let s = net.schedule().expect("a timetable");
    assert!(s.trips.len() > 1000, "{} trips", s.trips.len());
    // Far fewer patterns than trips: trips share their stop lists.
    assert!(
        s.patterns.len() * 5 < s.trips.len(),
        "{} patterns",
        s.patterns.len()
    );
    assert!(s.stop_time_count() > 30_000);
    for p in &s.patterns {
        assert!(p.progress_m.windows(2).all(|w| w[0] <= w[1]));
    }
    assert_eq!(s.tz.iana_name(), Some("Australia/Brisbane"));
}

#[test]
fn a_bus_two_minutes_late_has_delay_near_120() {
    let net = cairns();
    let trip = morning_trip(&net);
    let states = run_late(&net, trip, 120.0, true);
    let delays: Vec<i64> = states.iter().filter_map(|s| s.delay_s).collect();
    assert!(delays.len() > 50, "{} delays", delays.len());
    // After the first minutes (the filter settling, the bus leaving its terminal) every
    // delay is within ±20 s of 120.
    let settled = &delays[delays.len() / 10..];
    for d in settled {
        assert!((100..=140).contains(d), "delay {d} in {settled:?}");
    }
    let next = states
        .iter()
        .filter_map(|s| s.next_stop.as_ref())
        .filter_map(|n| n.scheduled)
        .count();
    assert!(next > 50, "next_stop.scheduled on {next} states");
    assert!(states.iter().all(|s| s.trip_inferred.is_none()));
}

#[test]
fn upcoming_stops_of_a_late_bus_carry_its_delay_in_trip_order() {
    let net = cairns();
    let s = net.schedule().unwrap();
    let trip = morning_trip(&net);
    let pattern = s.pattern(trip).unwrap();
    let cfg = PipelineConfig::default();
    let day0 = day_start_ms(&s.tz, from_yyyymmdd(DATE).unwrap()).unwrap();
    let corridor = &net.corridors()[pattern.corridor as usize];
    let times = s.times(trip);
    let mut t = Tracker::new("bus-up");
    let mut checked = 0;
    // A third of the way through the trip, 120 s late, one fix every 5 s for 10 minutes.
    let (dep, arr) = (
        times[0].departure as f64,
        times[times.len() - 1].arrival as f64,
    );
    let t0 = dep + (arr - dep) / 3.0;
    for k in 0..120 {
        let t_s = t0 + 5.0 * k as f64;
        let prog = scheduled_progress(&net, trip, t_s - 120.0);
        let ts = day0 + (t_s * 1000.0) as i64;
        let mut fix = Fix::new(net.frame().to_geo(corridor.point_at(prog).0), ts);
        fix.route = Some("110-423".into());
        fix.trip = Some(s.trips[trip as usize].id.clone());
        let Ok(Outcome::Forwarded { state, .. }) = t.process(&net, &cfg, fix, ts) else {
            continue;
        };
        let up = t.upcoming_stops(&net, 4);
        if k < 24 || up.is_empty() {
            continue; // the filter settling
        }
        assert_eq!(up.len(), 4);
        let fit = t.trip_fit().unwrap();
        let first = pattern.stops[fit.next as usize] as usize;
        assert_eq!(up[0].id, net.stops()[first].id);
        for (i, u) in up.iter().enumerate() {
            let k = fit.next as usize + i;
            let sched = day0 + times[k].arrival as i64 * 1000;
            assert_eq!(u.scheduled, Some(sched));
            let delay = u.delay_s.unwrap();
            assert_eq!(u.eta, Some(sched + delay * 1000), "{u:?}");
            assert!((90..=150).contains(&delay), "{delay} at {u:?}");
            let along = pattern.progress_m[k] as f64 - fit.progress_m.unwrap();
            assert!((u.distance_m - along.max(0.0)).abs() < 0.1, "{u:?}");
        }
        assert!(up.windows(2).all(|w| w[0].eta < w[1].eta));
        assert_eq!(state.delay_s, fit.delay_s.map(i64::from));
        checked += 1;
    }
    assert!(checked > 60, "{checked}");
}

#[test]
fn a_bus_naming_only_its_route_gets_the_right_trip() {
    let net = cairns();
    let s = net.schedule().unwrap();
    let trip = morning_trip(&net);
    let want = s.trips[trip as usize].id.clone();
    let states = run_late(&net, trip, 120.0, false);
    let inferred: Vec<&geo_engine::VehicleState> = states
        .iter()
        .filter(|s| s.trip_inferred == Some(true))
        .collect();
    assert!(
        inferred.len() * 10 >= states.len() * 9,
        "{}/{}",
        inferred.len(),
        states.len()
    );
    for st in &inferred {
        assert_eq!(st.trip.as_deref(), Some(want.as_str()));
    }
    let settled: Vec<i64> = inferred.iter().filter_map(|s| s.delay_s).collect();
    let settled = &settled[settled.len() / 10..];
    assert!(
        settled.iter().all(|d| (100..=140).contains(d)),
        "{settled:?}"
    );
}

#[test]
fn predictions_follow_stop_order_and_never_decrease() {
    let net = cairns();
    let s = net.schedule().unwrap();
    let trip = morning_trip(&net);
    let pattern = s.pattern(trip).unwrap();
    let cfg = PipelineConfig::default();
    let day0 = day_start_ms(&s.tz, from_yyyymmdd(DATE).unwrap()).unwrap();
    let corridor = &net.corridors()[pattern.corridor as usize];
    let times = s.times(trip);
    let mut t = Tracker::new("bus-p");
    let mut checked = 0;
    let mut t_s = times[0].departure as f64;
    while t_s < times[times.len() - 1].arrival as f64 {
        let prog = scheduled_progress(&net, trip, t_s - 200.0);
        let at = net.frame().to_geo(corridor.point_at(prog).0);
        let ts = day0 + (t_s * 1000.0) as i64;
        let mut fix = Fix::new(at, ts);
        fix.route = Some("110-423".into());
        let forwarded = matches!(
            t.process(&net, &cfg, fix, ts),
            Ok(Outcome::Forwarded { .. })
        );
        if let Some(fit) = t.trip_fit().filter(|_| forwarded) {
            let preds = fit.predictions(s);
            assert!(!preds.is_empty());
            assert_eq!(preds[0].index, fit.next as usize);
            for w in preds.windows(2) {
                assert!(pattern.sequences[w[0].index] < pattern.sequences[w[1].index]);
                assert!(w[0].arrival_ms <= w[0].departure_ms);
                assert!(w[0].departure_ms < w[1].arrival_ms, "{w:?}");
            }
            assert!(preds[0].arrival_ms >= ts);
            checked += 1;
        }
        t_s += 10.0;
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn a_second_feed_loads_with_its_timetable() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/dta_sample_gtfs.zip"
    ))
    .expect("data/dta_sample_gtfs.zip");
    let net = Network::from_gtfs_zip(&bytes).expect("loads");
    let s = net.schedule().expect("a timetable");
    assert_eq!(s.tz.iana_name(), Some("America/Los_Angeles"));
    // Frequency-based trips are left out; AB1, AB2, BFC1, BFC2 and AAMV1-4 stay.
    assert!(s.trip_index("AB1").is_some());
    assert!(s.trip_index("CITY1").is_none());
}
