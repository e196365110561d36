//! Cost per fix through the whole pipeline with every Cairns GTFS route loaded, the tracker
//! snapshot the state writer copies and serializes per update, and the R-tree route lookup
//! against a linear scan over all segments.
//!
//! `cargo bench -p geo-engine --bench pipeline`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use geo::Point;
use geo_engine::corridor::nearest_linear;
use geo_engine::local::Local;
use geo_engine::{Network, PipelineConfig, SimConfig, Tracker, parse_fixes, simulate};

fn cairns() -> Network {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/cairns_gtfs.zip"
    ))
    .expect("data/cairns_gtfs.zip");
    Network::from_gtfs_zip(&bytes).expect("Cairns GTFS")
}

fn pipeline(c: &mut Criterion) {
    let net = cairns();
    let cfg = PipelineConfig::default();
    eprintln!("network: {}", net.summary());
    let sim = SimConfig {
        route: "110-423".into(),
        noise_m: 5.0,
        duplicate_prob: 0.02,
        invalid_prob: 0.01,
        ..SimConfig::default()
    };
    let trace = simulate(&net, &sim);
    let n = trace.len() as u64;
    eprintln!("trace: {n} fixes");

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(n));
    g.bench_function("process_trace_route_110", |b| {
        b.iter_batched(
            || Tracker::new("bus"),
            |mut t| {
                for f in &trace {
                    let _ = black_box(t.process(&net, &cfg, f.fix.clone(), f.sent_ms + 20));
                }
                t
            },
            BatchSize::SmallInput,
        )
    });
    let payloads: Vec<String> = trace.iter().map(|f| f.fix.to_json()).collect();
    g.bench_function("parse_and_process_route_110", |b| {
        b.iter_batched(
            || Tracker::new("bus"),
            |mut t| {
                for (p, f) in payloads.iter().zip(&trace) {
                    if let Ok(fixes) = parse_fixes(p.as_bytes()) {
                        for fix in fixes {
                            let _ = black_box(t.process(&net, &cfg, fix, f.sent_ms + 20));
                        }
                    }
                }
                t
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // What the state writer pays per update for the tracker snapshot (filter state included):
    // a copy into the write-behind buffer, then its JSON for `HSET tracker`. Taken after five
    // minutes of fixes at 1 Hz on the route, past the ETA window.
    let mut t = Tracker::new("bus");
    for f in trace.iter().take(300) {
        let _ = t.process(&net, &cfg, f.fix.clone(), f.sent_ms + 20);
    }
    let bytes = serde_json::to_vec(&t).expect("tracker JSON").len();
    eprintln!("tracker snapshot: {bytes} bytes of JSON");
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("tracker_clone_and_json", |b| {
        b.iter(|| {
            let copy = black_box(&t).clone();
            black_box(serde_json::to_vec(&copy).expect("tracker JSON"))
        })
    });
    g.finish();

    // Points along the trace, matched against every route's segments.
    let points: Vec<Local> = trace
        .iter()
        .step_by(7)
        .take(200)
        .map(|f| {
            net.frame()
                .to_local(Point::new(f.fix.lon, f.fix.lat.clamp(-90.0, 90.0)))
        })
        .collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("rtree_all_routes", |b| {
        b.iter(|| {
            for p in &points {
                black_box(net.match_local(None, *p, cfg.corridor_m, None));
            }
        })
    });
    g.bench_function("linear_scan_all_segments", |b| {
        b.iter(|| {
            for p in &points {
                black_box(nearest_linear(net.corridors(), *p));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = pipeline
}
criterion_main!(benches);
