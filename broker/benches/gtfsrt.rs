//! GTFS-Realtime feed build + encode for 2,000 vehicles on Cairns trips (docs/gtfs-realtime.md):
//! what the first poller of each second pays; later pollers of that second get the cached bytes.
//!
//! `cargo bench -p fleetmq --bench gtfsrt`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetmq::gtfsrt::{FeedKind, Feeds, LiveVehicles};
use geo_engine::schedule::TripFit;
use geo_engine::schedule::calendar::{day_start_ms, from_yyyymmdd};
use geo_engine::{Network, VehicleState};

const VEHICLES: usize = 2_000;

fn setup() -> (Feeds, i64) {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip");
    let net = Arc::new(Network::from_gtfs_zip(&bytes).expect("Cairns GTFS"));
    let s = net.schedule().expect("timetable");
    let day0 = day_start_ms(&s.tz, from_yyyymmdd(20140603).expect("date")).expect("day");
    let live = Arc::new(LiveVehicles::default());
    for v in 0..VEHICLES {
        let t = (v % s.trips.len()) as u32;
        let times = s.times(t);
        let next = times.len() / 2;
        let ts = day0 + times[next].arrival as i64 * 1000 - 30_000;
        let stop = &net.stops()[s.pattern(t).expect("pattern").stops[next] as usize];
        let state: VehicleState = serde_json::from_value(serde_json::json!({
            "vehicle": format!("bus-{v}"), "lat": stop.position.y(), "lon": stop.position.x(),
            "raw_lat": stop.position.y(), "raw_lon": stop.position.x(), "ts": ts, "speed": 8.5, "heading": 90.0,
            "route": net.routes()[s.trips[t as usize].route as usize].id,
            "trip": s.trips[t as usize].id, "status": "moving", "delay_s": 95,
            "received_at": ts, "processed_at": ts,
        }))
        .expect("state");
        let fit = TripFit {
            trip: t,
            trip_id: s.trips[t as usize].id.as_str().into(),
            inferred: v % 2 == 0,
            start_date: 20140603,
            day_start_ms: day0,
            delay_s: Some(95),
            progress_m: None,
            next: next as u32,
            at_stop: None,
            ts,
            finished: false,
        };
        live.update(Arc::new(state), Some(fit), v % 50 == 0);
    }
    (Feeds::new(net, live), day0 + 12 * 3600 * 1000)
}

fn feeds(c: &mut Criterion) {
    let (feeds, now) = setup();
    let mut g = c.benchmark_group("gtfsrt_2000_vehicles");
    g.throughput(Throughput::Elements(VEHICLES as u64));
    for kind in [
        FeedKind::VehiclePositions,
        FeedKind::TripUpdates,
        FeedKind::Alerts,
    ] {
        let bytes = feeds.get(kind, false, now).len();
        eprintln!("{}: {bytes} bytes", kind.as_str());
        let mut second = 0;
        g.bench_function(format!("build_encode_{}", kind.as_str()), |b| {
            b.iter(|| {
                // A new second each time: every call builds and encodes.
                second += 1;
                black_box(feeds.get(kind, false, now + second * 1000))
            })
        });
    }
    g.bench_function("cached_trip_updates", |b| {
        b.iter(|| black_box(feeds.get(FeedKind::TripUpdates, false, now)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = feeds
}
criterion_main!(benches);
