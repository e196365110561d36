//! `--watch riders=R,routes=T,fleet=F`: a realistic mix of WebSocket watchers
//! (docs/bench.md#drive). Riders follow one vehicle each (rider `j` follows driver `j
//! mod drivers`), route watchers one route each (watcher `j` follows route `j mod routes`), fleet
//! dashboards the whole fleet through a bbox covering the world.

use std::str::FromStr;

use serde_json::{Value, json};

/// How many watchers of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchMix {
    /// Watchers of one vehicle each.
    pub riders: usize,
    /// Watchers of one route each.
    pub routes: usize,
    /// Watchers of every vehicle (bbox).
    pub fleet: usize,
}

impl WatchMix {
    /// All watchers together.
    pub fn total(&self) -> usize {
        self.riders + self.routes + self.fleet
    }
}

impl FromStr for WatchMix {
    type Err = String;

    fn from_str(s: &str) -> Result<WatchMix, String> {
        let mut mix = WatchMix::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, n) = part
                .split_once('=')
                .ok_or_else(|| format!("expected KIND=N, got {part:?}"))?;
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("{key}: {n:?} is not a count"))?;
            match key.trim() {
                "riders" => mix.riders = n,
                "routes" => mix.routes = n,
                "fleet" => mix.fleet = n,
                other => {
                    return Err(format!(
                        "unknown watcher kind {other:?} (riders, routes, fleet)"
                    ));
                }
            }
        }
        if mix.total() == 0 {
            return Err("--watch needs at least one watcher".into());
        }
        Ok(mix)
    }
}

/// What one WebSocket watcher subscribes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One vehicle id.
    Vehicle(String),
    /// One route id.
    Route(String),
    /// Every vehicle.
    Fleet,
}

impl Target {
    /// The subscribe request (docs/http-api.md); with `batch`, `"batch":true` (one `updates`
    /// frame per `1/max_hz` with every changed vehicle, as the map page asks).
    pub fn request(&self, max_hz: f64, batch: bool) -> Value {
        let mut req = json!({"op": "subscribe", "id": "s", "max_hz": max_hz});
        match self {
            Target::Vehicle(v) => req["vehicle"] = json!(v),
            Target::Route(r) => req["route"] = json!(r),
            Target::Fleet => req["bbox"] = json!([-180.0, -90.0, 180.0, 90.0]),
        }
        if batch {
            req["batch"] = json!(true);
        }
        req
    }

    /// The watcher kind, as the per-kind latency rows name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Vehicle(_) => "riders",
            Target::Route(_) => "routes",
            Target::Fleet => "fleet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_bad_ones_are_refused() {
        let m: WatchMix = "riders=900,routes=90,fleet=10".parse().unwrap_or_default();
        assert_eq!(
            m,
            WatchMix {
                riders: 900,
                routes: 90,
                fleet: 10
            }
        );
        assert_eq!(m.total(), 1000);
        assert_eq!("fleet=2".parse::<WatchMix>().map(|m| m.fleet), Ok(2));
        assert!("riders=x".parse::<WatchMix>().is_err());
        assert!("buses=3".parse::<WatchMix>().is_err());
        assert!("riders=0".parse::<WatchMix>().is_err());
    }

    #[test]
    fn requests_carry_one_selector() {
        let r = Target::Vehicle("b1-3".into()).request(2.0, false);
        assert_eq!(r["vehicle"], "b1-3");
        assert_eq!(r["max_hz"], 2.0);
        assert!(r.get("batch").is_none() && r.get("route").is_none());
        let r = Target::Route("M1".into()).request(1.0, true);
        assert_eq!(r["route"], "M1");
        assert_eq!(r["batch"], true);
        assert_eq!(Target::Fleet.request(1.0, false)["bbox"][2], 180.0);
        assert_eq!(Target::Fleet.kind(), "fleet");
    }
}
