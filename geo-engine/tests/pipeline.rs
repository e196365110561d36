//! The whole pipeline on simulated traces over the bundled Cairns routes.

use geo_engine::corridor::nearest_linear;
use geo_engine::simulate::Detour;
use geo_engine::{
    Event, EventKind, Network, Outcome, PipelineConfig, SimConfig, SimFix, SimKind, Tracker,
    VehicleState, simulate,
};

/// Everything one run produced, fix by fix.
struct Run {
    states: Vec<(SimFix, VehicleState)>,
    events: Vec<Event>,
}

fn run(net: &Network, cfg: &PipelineConfig, trace: &[SimFix]) -> Run {
    let mut t = Tracker::new("bus-1");
    let mut out = Run {
        states: Vec::new(),
        events: Vec::new(),
    };
    for f in trace {
        let now = f.sent_ms + 40;
        let res = t.process(net, cfg, f.fix.clone(), now);
        match (f.kind, res) {
            (SimKind::Invalid(reason), Err(r)) => assert_eq!(r.reason, reason, "{r}"),
            (SimKind::Invalid(reason), Ok(o)) => panic!("invalid ({reason}) fix accepted: {o:?}"),
            (_, Err(r)) => panic!("valid fix rejected: {r} ({:?})", f.fix),
            (SimKind::Duplicate, Ok(o)) => assert_eq!(o, Outcome::Duplicate),
            (SimKind::Jitter, Ok(o)) => assert_eq!(
                o,
                Outcome::Jitter,
                "jitter fix forwarded at ts {}",
                f.fix.ts
            ),
            (SimKind::Normal, Ok(Outcome::Forwarded { state, events })) => {
                out.states.push((f.clone(), state));
                out.events.extend(events);
            }
            (SimKind::Normal, Ok(_)) => {}
        }
    }
    out
}

fn count(events: &[Event], kind: EventKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// Route 121 outbound with a 300 m detour, duplicates, jitter at stops and invalid fixes.
#[test]
fn full_run_with_detour() {
    let net = Network::bundled();
    let cfg = PipelineConfig::default();
    let detour = Detour {
        start_m: 2500.0,
        length_m: 800.0,
        offset_m: 300.0,
    };
    let sim = SimConfig {
        route: "121".into(),
        corridor: Some("121-a".into()),
        noise_m: 5.0,
        detour: Some(detour),
        duplicate_prob: 0.05,
        invalid_prob: 0.03,
        seed: 7,
        ..SimConfig::default()
    };
    let trace = simulate(&net, &sim);
    assert!(trace.len() > 500, "{} fixes", trace.len());
    for kind in [SimKind::Duplicate, SimKind::Jitter] {
        assert!(
            trace.iter().any(|f| f.kind == kind),
            "trace has no {kind:?}"
        );
    }
    assert!(
        trace
            .iter()
            .filter(|f| matches!(f.kind, SimKind::Invalid(_)))
            .count()
            >= 7
    );

    // Precondition: at full offset the detour is well clear of every part of the route.
    let ci = trace[0].corridor;
    let corridors = &net.corridors()[ci..=ci];
    for f in trace.iter().filter(|f| f.offset_m >= 299.0) {
        let p = net.frame().to_local(f.true_lat, f.true_lon);
        let d = nearest_linear(corridors, p).unwrap().off_route_m;
        assert!(
            d > 150.0,
            "detour passes {d:.0} m from the route at {:.0} m",
            f.progress_m
        );
    }

    let r = run(&net, &cfg, &trace);
    assert_eq!(
        count(&r.events, EventKind::Deviation),
        1,
        "{:#?}",
        kinds(&r.events)
    );
    assert_eq!(count(&r.events, EventKind::BackOnRoute), 1);
    let dev = r
        .events
        .iter()
        .find(|e| e.kind == EventKind::Deviation)
        .unwrap();
    assert!(dev.off_route_m.unwrap() > 50.0);
    let dev_state = r.states.iter().find(|(_, s)| s.ts == dev.ts).unwrap();
    assert!(
        dev_state.0.offset_m > 50.0,
        "deviation raised at true offset {}",
        dev_state.0.offset_m
    );

    // Stops: arrivals follow the corridor's order; every stop away from the detour and at
    // least two radii from its neighbours is arrived at.
    let c = &net.corridors()[ci];
    let order: Vec<&str> = c
        .stops
        .iter()
        .map(|cs| net.stops()[cs.stop].id.as_str())
        .collect();
    let arrived: Vec<&str> = r
        .events
        .iter()
        .filter(|e| e.kind == EventKind::StopArrival)
        .map(|e| e.stop_id.as_deref().unwrap())
        .collect();
    let mut pos = 0;
    for id in &arrived {
        let at = order[pos..]
            .iter()
            .position(|s| s == id)
            .unwrap_or_else(|| panic!("stop {id} out of order: {arrived:?}"));
        pos += at + 1;
    }
    let near_detour = |p: f64| {
        p > detour.start_m - 60.0
            && p < detour.start_m + detour.length_m + 2.0 * detour.offset_m + 60.0
    };
    for (i, cs) in c.stops.iter().enumerate() {
        let isolated = [i.wrapping_sub(1), i + 1]
            .iter()
            .filter_map(|&j| c.stops.get(j))
            .all(|o| {
                geo_engine::local::dist(net.stops()[o.stop].local, net.stops()[cs.stop].local)
                    > 2.0 * cfg.stop_radius_m
            });
        let id = net.stops()[cs.stop].id.as_str();
        if isolated && !near_detour(cs.progress_m) {
            assert!(
                arrived.contains(&id),
                "stop {id} at {:.0} m not arrived at",
                cs.progress_m
            );
        }
    }
    assert!(
        arrived.len() >= c.stops.len() / 2,
        "{} of {} stops",
        arrived.len(),
        c.stops.len()
    );
    assert_eq!(
        count(&r.events, EventKind::StopDeparture) + 1,
        arrived.len(),
        "every stop but the last is left"
    );
    assert_eq!(count(&r.events, EventKind::Online), 1);

    // Progress never decreases while on route; ETAs exist and lie ahead.
    let mut last = f64::NEG_INFINITY;
    for (_, s) in &r.states {
        if s.on_route == Some(true) {
            let p = s.progress_m.expect("progress while on route");
            assert!(p >= last, "progress went back from {last} to {p}");
            last = p;
        }
    }
    let with_eta: Vec<_> = r
        .states
        .iter()
        .filter_map(|(_, s)| s.next_stop.as_ref().map(|n| (s.ts, n)))
        .filter(|(_, n)| n.eta.is_some())
        .collect();
    assert!(with_eta.len() > r.states.len() / 2);
    assert!(with_eta.iter().all(|(ts, n)| n.eta.unwrap() >= *ts));
    println!(
        "{} fixes, {} forwarded, {} events, {} stops arrived",
        trace.len(),
        r.states.len(),
        r.events.len(),
        arrived.len()
    );
}

fn kinds(events: &[Event]) -> Vec<(i64, &'static str)> {
    events.iter().map(|e| (e.ts, e.kind.as_str())).collect()
}
