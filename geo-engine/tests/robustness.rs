//! Nothing from the network panics the pipeline: arbitrary payload bytes, arbitrary fixes.

use geo_engine::{Fix, Network, Outcome, PipelineConfig, Tracker, parse_fixes};
use proptest::prelude::*;

const NOW: i64 = 1_763_700_000_000;

fn bundled() -> &'static Network {
    static NET: std::sync::OnceLock<Network> = std::sync::OnceLock::new();
    NET.get_or_init(Network::bundled)
}

#[test]
fn network_and_tracker_are_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Network>();
    send_sync::<Tracker>();
}

fn any_fix() -> impl Strategy<Value = Fix> {
    (
        prop_oneof![-100.0f64..100.0, -16.95f64..-16.75, Just(0.0)],
        prop_oneof![-200.0f64..200.0, 145.6f64..145.8, Just(0.0)],
        prop_oneof![
            (NOW - 100_000_000)..(NOW + 100_000),
            Just(i64::MIN),
            Just(i64::MAX)
        ],
        prop::option::of(-10.0f64..100.0),
        prop::option::of(-720.0f64..720.0),
        prop::option::of(-1.0f64..200.0),
        prop::option::of(prop_oneof![
            Just("110".to_owned()),
            Just("nope".to_owned()),
            Just("121".to_owned())
        ]),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(lat, lon, ts, speed, heading, accuracy, route, seq)| Fix {
            lat,
            lon,
            ts,
            speed,
            heading,
            accuracy,
            route,
            trip: None,
            seq,
            altitude: None,
            battery: None,
        })
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_fixes(&bytes);
    }

    #[test]
    fn parse_never_panics_on_json_like(s in r#"[\[\{]("(lat|lon|ts|seq|speed|route)":(-?[0-9]{1,20}(\.[0-9]+)?|"x"|null|\[\]|\{\}),?){0,8}[\]\}]"#) {
        let _ = parse_fixes(s.as_bytes());
    }

    #[test]
    fn process_never_panics(fixes in prop::collection::vec((any_fix(), 0i64..5000), 1..60)) {
        let net = bundled();
        let cfg = PipelineConfig::default();
        let mut t = Tracker::new("fuzz");
        let mut now = NOW;
        for (f, dt) in fixes {
            now += dt;
            if let Ok(Outcome::Forwarded { state, .. }) = t.process(net, &cfg, f, now) {
                prop_assert!(state.lat.is_finite() && state.lon.is_finite());
                prop_assert!(state.progress_m.is_none_or(f64::is_finite));
            }
            let _ = t.check_stale(&cfg, now);
        }
        let _ = t.mark_offline(now);
        let back: Tracker = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        prop_assert_eq!(back, t);
    }
}
