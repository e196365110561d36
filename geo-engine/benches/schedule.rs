//! What schedule matching adds to `Tracker::process` (docs/gtfs-realtime.md): one Cairns bus
//! running 2 min behind a real trip on 2014-06-03, naming its route and trip, then only its route
//! (trip inference), through the Cairns GTFS network with and without its timetables.
//!
//! `cargo bench -p geo-engine --bench schedule`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use geo_engine::schedule::calendar::{day_start_ms, from_yyyymmdd};
use geo_engine::{Fix, Network, PipelineConfig, Tracker};

fn cairns() -> Network {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip");
    Network::from_gtfs_zip(&bytes).expect("Cairns GTFS")
}

/// One fix every 5 s along the first weekday trip of route 110 after 08:00, 120 s late.
fn trace(net: &Network, declare_trip: bool) -> Vec<Fix> {
    let s = net.schedule().expect("timetable");
    let date = from_yyyymmdd(20140603).expect("date");
    let route = net.route_index("110-423").expect("route");
    let t = *s
        .route_trips(route)
        .iter()
        .find(|&&t| {
            s.calendar.runs(s.trips[t as usize].service, date)
                && s.times(t)[0].departure >= 8 * 3600
        })
        .expect("trip");
    let (p, times) = (s.pattern(t).expect("pattern"), s.times(t));
    let c = &net.corridors()[p.corridor as usize];
    let day0 = day_start_ms(&s.tz, date).expect("day");
    let mut out = Vec::new();
    let (start, end) = (
        times[0].departure as f64,
        times[times.len() - 1].arrival as f64,
    );
    let mut t_s = start;
    while t_s < end {
        let sched = t_s - 120.0;
        let k = times
            .partition_point(|x| (x.departure as f64) <= sched)
            .max(1)
            - 1;
        let prog = if k + 1 < times.len() {
            let (d, a) = (times[k].departure as f64, times[k + 1].arrival as f64);
            let f = ((sched - d) / (a - d).max(1.0)).clamp(0.0, 1.0);
            p.progress_m[k] as f64 + f * (p.progress_m[k + 1] - p.progress_m[k]) as f64
        } else {
            p.progress_m[k] as f64
        };
        let at = net.frame().to_geo(c.point_at(prog).0);
        let mut fix = Fix::new(at, day0 + (t_s * 1000.0) as i64);
        fix.route = Some("110-423".into());
        if declare_trip {
            fix.trip = Some(s.trips[t as usize].id.clone());
        }
        out.push(fix);
        t_s += 5.0;
    }
    out
}

fn schedule(c: &mut Criterion) {
    let with = cairns();
    let without = with.without_schedule();
    let cfg = PipelineConfig::default();
    for (name, declare) in [("declared_trip", true), ("inferred_trip", false)] {
        let fixes = trace(&with, declare);
        let mut g = c.benchmark_group(format!("schedule_{name}"));
        g.throughput(Throughput::Elements(fixes.len() as u64));
        for (label, net) in [("with_timetable", &with), ("without_timetable", &without)] {
            g.bench_function(label, |b| {
                b.iter_batched(
                    || Tracker::new("bus"),
                    |mut t| {
                        for f in &fixes {
                            let _ = black_box(t.process(net, &cfg, f.clone(), f.ts));
                        }
                        t
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = schedule
}
criterion_main!(benches);
