//! The whole pipeline on simulated traces over the bundled Cairns routes.

use geo_engine::simulate::{Detour, find_detour};
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

/// Every bundled corridor with a 300 m detour, duplicates, jitter at stops and invalid fixes,
/// for two seeds each.
#[test]
fn full_run_with_detour() {
    let net = Network::bundled();
    let mut runs = 0;
    for c in net.corridors() {
        let route = &*net.routes()[c.route].id;
        let Some(detour) = find_detour(&net, route, &c.id, 300.0, 600.0) else {
            println!("{}: no clear stretch for a detour", c.id);
            continue;
        };
        for seed in [7, 8] {
            check_run(&net, route, &c.id, detour, seed);
            runs += 1;
        }
    }
    assert!(runs >= 16, "only {runs} runs");
}

fn check_run(net: &Network, route: &str, corridor: &str, detour: Detour, seed: u64) {
    let cfg = PipelineConfig::default();
    let sim = SimConfig {
        route: route.into(),
        corridor: Some(corridor.into()),
        noise_m: 5.0,
        detour: Some(detour),
        duplicate_prob: 0.05,
        invalid_prob: 0.03,
        seed,
        ..SimConfig::default()
    };
    let trace = simulate(net, &sim);
    let ctx = format!(
        "route {route} ({corridor}), seed {seed}, detour at {:.0} m",
        detour.start_m
    );
    assert!(trace.len() > 300, "{ctx}: {} fixes", trace.len());
    for kind in [SimKind::Duplicate, SimKind::Jitter] {
        assert!(
            trace.iter().any(|f| f.kind == kind),
            "{ctx}: trace has no {kind:?}"
        );
    }
    assert!(
        trace
            .iter()
            .filter(|f| matches!(f.kind, SimKind::Invalid(_)))
            .count()
            >= 7,
        "{ctx}"
    );

    let r = run(net, &cfg, &trace);
    assert_eq!(
        count(&r.events, EventKind::Deviation),
        1,
        "{ctx}: {:?}",
        kinds(&r.events)
    );
    assert_eq!(
        count(&r.events, EventKind::BackOnRoute),
        1,
        "{ctx}: {:?}",
        kinds(&r.events)
    );
    let dev = r
        .events
        .iter()
        .find(|e| e.kind == EventKind::Deviation)
        .unwrap();
    assert!(dev.off_route_m.unwrap() > 50.0, "{ctx}");
    let dev_state = r.states.iter().find(|(_, s)| s.ts == dev.ts).unwrap();
    assert!(
        dev_state.0.offset_m > 50.0,
        "{ctx}: deviation raised at true offset {}",
        dev_state.0.offset_m
    );

    // Stops: arrivals follow the corridor's order; every stop away from the detour and at
    // least two radii from its neighbours is arrived at.
    let ci = trace[0].corridor;
    let c = &net.corridors()[ci];
    let order: Vec<&str> = c.stops.iter().map(|cs| &*net.stops()[cs.stop].id).collect();
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
            .unwrap_or_else(|| panic!("{ctx}: stop {id} out of order: {arrived:?}"));
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
        let id = &*net.stops()[cs.stop].id;
        if isolated && !near_detour(cs.progress_m) {
            assert!(
                arrived.contains(&id),
                "{ctx}: stop {id} at {:.0} m not arrived at",
                cs.progress_m
            );
        }
    }
    assert!(
        arrived.len() >= c.stops.len() / 2,
        "{ctx}: {} of {} stops",
        arrived.len(),
        c.stops.len()
    );
    let departures = count(&r.events, EventKind::StopDeparture);
    assert!(
        departures + 1 == arrived.len() || departures == arrived.len(),
        "{ctx}: every stop but maybe the last is left"
    );
    assert_eq!(count(&r.events, EventKind::Online), 1, "{ctx}");

    // Progress never decreases while on route; ETAs exist and lie ahead.
    let mut last = f64::NEG_INFINITY;
    for (_, s) in &r.states {
        if s.on_route == Some(true) {
            let p = s.progress_m.expect("progress while on route");
            assert!(p >= last, "{ctx}: progress went back from {last} to {p}");
            last = p;
        }
    }
    let with_eta: Vec<_> = r
        .states
        .iter()
        .filter_map(|(_, s)| s.next_stop.as_ref().map(|n| (s.ts, n)))
        .filter(|(_, n)| n.eta.is_some())
        .collect();
    assert!(with_eta.len() > r.states.len() / 2, "{ctx}");
    assert!(
        with_eta.iter().all(|(ts, n)| n.eta.unwrap() >= *ts),
        "{ctx}"
    );
    println!(
        "{ctx}: {} fixes, {} forwarded, {} events, {}/{} stops arrived",
        trace.len(),
        r.states.len(),
        r.events.len(),
        arrived.len(),
        c.stops.len()
    );
}

fn kinds(events: &[Event]) -> Vec<(i64, &'static str)> {
    events.iter().map(|e| (e.ts, e.kind.as_str())).collect()
}

/// Endless laps over every bundled route: the device clock advances exactly one interval per
/// fix (so a real-time publisher never gets `future_ts`), every fix is accepted, and progress
/// restarts on each new leg.
#[test]
fn endless_laps_keep_time_and_stay_valid() {
    let net = Network::bundled();
    let cfg = PipelineConfig::default();
    for route in net.route_ids() {
        let sim = SimConfig {
            route: route.into(),
            laps: None,
            seed: 9,
            ..SimConfig::default()
        };
        let trace: Vec<SimFix> = geo_engine::Simulator::new(&net, sim.clone())
            .unwrap()
            .take(20_000)
            .collect();
        let mut t = Tracker::new("lap");
        let mut legs = 0;
        for (i, f) in trace.iter().enumerate() {
            assert_eq!(
                f.fix.ts,
                sim.start_ms + i as i64 * sim.interval_ms,
                "route {route}: clock drift at fix {i}"
            );
            let res = t.process(&net, &cfg, f.fix.clone(), f.sent_ms + 30);
            assert!(res.is_ok(), "route {route}: fix {i} rejected: {res:?}");
            legs += usize::from(i > 0 && f.corridor != trace[i - 1].corridor);
        }
        assert!(
            legs >= 2,
            "route {route}: {legs} leg changes in {} fixes",
            trace.len()
        );
    }
}
