//! Prints a simulated trace as JSON lines, for tests in other languages (the broker's end-to-end
//! test publishes these to `fleet/{id}/location`):
//!
//! `cargo run -p geo-engine --example trace -- --route 121 --corridor 121-a --detour 300 --duplicates 0.05 --invalid 0.03 --seed 7`
//!
//! Each line: `{"fix": {...docs/topics-and-payloads.md#location-updates...}, "kind":
//! "normal"|"duplicate"|"jitter"|"invalid", "reason": "<reject reason>"?, "progress_m", "offset_m",
//! "stops": [...]}`; the first line is a header `{"route", "corridor", "stops": [stop ids in
//! order], "detour": {...}|null}`. By default the trace ends at the current time (so a fast
//! publisher's fixes are all in the past and none is `future_ts`); `--start-ms MS` fixes it.

use geo_engine::simulate::{SimKind, Simulator, find_detour};
use geo_engine::{Network, SimConfig};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let net = match get("--routes") {
        Some(path) => Network::from_geojson(&std::fs::read_to_string(path)?)?,
        None => Network::bundled(),
    };
    let route = get("--route").unwrap_or_else(|| "121".into());
    let ri = net
        .route_index(&route)
        .ok_or_else(|| format!("unknown route {route}"))?;
    let corridor = get("--corridor")
        .unwrap_or_else(|| net.corridors()[net.routes()[ri].corridors[0]].id.clone());
    let detour = match get("--detour") {
        Some(m) => Some(
            find_detour(&net, &route, &corridor, m.parse()?, 600.0)
                .ok_or("no clear stretch for that detour")?,
        ),
        None => None,
    };
    let mut sim = SimConfig {
        route: route.clone(),
        corridor: Some(corridor.clone()),
        detour,
        duplicate_prob: get("--duplicates")
            .map(|p| p.parse())
            .transpose()?
            .unwrap_or(0.0),
        invalid_prob: get("--invalid")
            .map(|p| p.parse())
            .transpose()?
            .unwrap_or(0.0),
        seed: get("--seed").map(|s| s.parse()).transpose()?.unwrap_or(1),
        noise_m: get("--noise")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(5.0),
        ..SimConfig::default()
    };
    let dry: Vec<_> = Simulator::new(&net, sim.clone())
        .ok_or("bad simulation")?
        .collect();
    sim.start_ms = match get("--start-ms") {
        Some(ms) => ms.parse()?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let span = dry.last().map(|f| f.sent_ms - sim.start_ms).unwrap_or(0);
            now - span - sim.interval_ms
        }
    };
    let c = net
        .corridors()
        .iter()
        .find(|c| c.id == corridor)
        .ok_or("unknown corridor")?;
    let stops: Vec<&str> = c.stops.iter().map(|cs| &*net.stops()[cs.stop].id).collect();
    let detour_json = detour
        .map(|d| json!({"start_m": d.start_m, "length_m": d.length_m, "offset_m": d.offset_m}));
    println!(
        "{}",
        json!({"route": route, "corridor": corridor, "stops": stops, "detour": detour_json})
    );
    for f in Simulator::new(&net, sim).ok_or("bad simulation")? {
        let (kind, reason) = match f.kind {
            SimKind::Normal => ("normal", None),
            SimKind::Duplicate => ("duplicate", None),
            SimKind::Jitter => ("jitter", None),
            SimKind::Invalid(r) => ("invalid", Some(r.as_str())),
        };
        let line = json!({"fix": f.fix, "kind": kind, "reason": reason, "progress_m": (f.progress_m * 10.0).round() / 10.0,
            "offset_m": (f.offset_m * 10.0).round() / 10.0, "sent_ms": f.sent_ms});
        println!("{line}");
    }
    Ok(())
}
