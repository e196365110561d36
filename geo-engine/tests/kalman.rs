//! The Kalman filter against the truth on a noisy simulated trace.

use geo_engine::kalman::Kalman;
use geo_engine::local::{Local, dist};
use geo_engine::{Network, PipelineConfig, SimConfig, SimKind, simulate};
use proptest::prelude::*;

/// Root-mean-square error of raw and smoothed positions against the true path, metres.
fn rmse(route: &str, noise_m: f64, seed: u64) -> (f64, f64) {
    let net = Network::bundled();
    let cfg = PipelineConfig::default();
    let sim = SimConfig {
        route: route.into(),
        noise_m,
        dwell_ms: 0,
        seed,
        ..SimConfig::default()
    };
    let trace: Vec<_> = simulate(&net, &sim)
        .into_iter()
        .filter(|f| f.kind == SimKind::Normal)
        .collect();
    assert!(trace.len() > 200);
    let frame = net.frame();
    let mut k: Option<Kalman> = None;
    let (mut raw2, mut smooth2, mut n) = (0.0, 0.0, 0.0);
    for f in &trace {
        let z = frame.to_local(f.fix.position());
        let truth = frame.to_local(f.truth);
        let est = match k.as_mut() {
            Some(k) => k.step(z, noise_m, f.fix.ts, cfg.process_noise),
            None => k.insert(Kalman::new(z, noise_m, f.fix.ts)).position(),
        };
        raw2 += dist(z, truth).powi(2);
        smooth2 += dist(est, truth).powi(2);
        n += 1.0;
    }
    ((raw2 / n).sqrt(), (smooth2 / n).sqrt())
}

#[test]
fn smoothed_rmse_beats_raw() {
    for (route, noise) in [("121", 8.0), ("110", 5.0), ("140", 15.0)] {
        let (raw, smooth) = rmse(route, noise, 3);
        println!("route {route}, noise {noise} m: raw RMSE {raw:.2} m, Kalman RMSE {smooth:.2} m");
        assert!(
            smooth < raw * 0.85,
            "route {route}: Kalman {smooth:.2} m vs raw {raw:.2} m"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Whatever the seed and noise, smoothing helps.
    #[test]
    fn smoothing_helps_for_any_seed(seed in 0u64..1000, noise in 3.0f64..20.0) {
        let (raw, smooth) = rmse("131", noise, seed);
        prop_assert!(smooth < raw, "Kalman {smooth:.2} m vs raw {raw:.2} m");
    }

    /// The estimate stays finite and near the measurements for any measurement sequence.
    #[test]
    fn stays_finite(zs in prop::collection::vec((-1e4f64..1e4, -1e4f64..1e4, 1i64..120_000, 0.5f64..100.0), 1..50)) {
        let mut k = Kalman::new(Local::new(0.0, 0.0), 5.0, 0);
        let mut ts = 0;
        for (x, y, dt, s) in zs {
            ts += dt;
            let p = k.step(Local::new(x, y), s, ts, 0.5);
            prop_assert!(p.x().is_finite() && p.y().is_finite() && k.is_finite());
        }
    }
}
