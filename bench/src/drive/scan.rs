//! A targeted reader of the states a watcher receives: finds each state's `vehicle` and `ts`
//! without parsing the rest. At 300,000+ states a second (every fleet watcher gets every state)
//! a whole `serde_json` parse per state was most of the load generator's CPU, on the cores the
//! broker needs.
//!
//! It relies on what makes a JSON text unambiguous, not on a field order: the bytes
//! `"vehicle":"` can only be the key `vehicle` with a string value (a `"` inside a string is
//! escaped, and a closing quote cannot be followed by `vehicle`), and the first `"ts":` after it
//! is that state's `ts` as long as no nested object between the two has a `ts` key (a state has
//! none: docs/topics-and-payloads.md#processed-state). Frames that are not `update`/`updates`
//! (snapshots, events, errors) or that do not start as the bridge writes them are left to the
//! caller's full parse ([`frame`]).

use std::sync::LazyLock;

use memchr::memmem::Finder;

const VEHICLE_KEY: &[u8] = b"\"vehicle\":\"";
const TS_KEY: &[u8] = b"\"ts\":";

/// Built once: building a finder per frame was 6 % of the bench's CPU.
static VEHICLE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(VEHICLE_KEY));
static TS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(TS_KEY));

/// What a bridge frame is, from its first bytes (docs/http-api.md#messages: the bridge writes
/// `type` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `update` or `updates`: one or more states to scan.
    States,
    /// `snapshot`, `event` or another kind that carries no delivery.
    Other,
    /// Anything else (an `error`, or a layout this scanner does not know): parse it whole.
    Parse,
}

/// The kind of a bridge text frame.
pub fn frame(text: &[u8]) -> Frame {
    let Some(rest) = text.strip_prefix(b"{\"type\":\"") else {
        return Frame::Parse;
    };
    if rest.starts_with(b"update\"") || rest.starts_with(b"updates\"") {
        Frame::States
    } else if rest.starts_with(b"error\"") {
        Frame::Parse
    } else {
        Frame::Other
    }
}

/// Calls `f(vehicle, ts)` for each state in `text` (a state, an `update` frame or an `updates`
/// frame), in order. A vehicle id holding an escape is passed as it is written (the bench's ids
/// have none); a state without a readable integer `ts` is skipped.
pub fn states(text: &[u8], mut f: impl FnMut(&str, i64)) {
    let (vehicle_key, ts_key) = (&*VEHICLE, &*TS);
    let mut at = 0;
    while let Some(found) = text.get(at..).and_then(|t| vehicle_key.find(t)) {
        let id_start = at + found + VEHICLE_KEY.len();
        let Some(id_len) = text.get(id_start..).and_then(|t| memchr::memchr(b'"', t)) else {
            return;
        };
        let id_end = id_start + id_len;
        let Some(ts_found) = text.get(id_end..).and_then(|t| ts_key.find(t)) else {
            return;
        };
        let ts_start = id_end + ts_found + TS_KEY.len();
        let (ts, digits) = integer(text.get(ts_start..).unwrap_or_default());
        at = ts_start + digits;
        if let (Some(ts), Ok(id)) = (ts, std::str::from_utf8(&text[id_start..id_end])) {
            f(id, ts);
        }
    }
}

/// The JSON integer at the start of `s` and the bytes it takes; `None` if there is none, it
/// overflows, or it is a fraction or exponent.
fn integer(s: &[u8]) -> (Option<i64>, usize) {
    let negative = s.first() == Some(&b'-');
    let start = usize::from(negative);
    let digits = s
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = start + digits;
    if digits == 0 || matches!(s.get(end), Some(b'.' | b'e' | b'E')) {
        return (None, end);
    }
    let mut v: i64 = 0;
    for &b in &s[start..end] {
        let Some(next) = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
        else {
            return (None, end);
        };
        v = next;
    }
    (Some(if negative { -v } else { v }), end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_engine::{NextStop, VehicleState, VehicleStatus};

    fn state(vehicle: &str, ts: i64, full: bool) -> VehicleState {
        VehicleState {
            vehicle: vehicle.into(),
            lat: -16.92,
            lon: 145.77,
            raw_lat: -16.920_001,
            raw_lon: 145.770_002,
            ts,
            speed: full.then_some(8.25),
            heading: full.then_some(271.5),
            route: full.then(|| "r\"ts\":1,\"vehicle\":\"x".into()),
            trip: full.then(|| "trip-\\-9".into()),
            status: VehicleStatus::Moving,
            on_route: full.then_some(true),
            off_route_m: full.then_some(3.5),
            progress_m: full.then_some(1234.0),
            next_stop: full.then(|| NextStop {
                id: "s-\"1\"".into(),
                name: "Stop \"ts\":5 {\"vehicle\":\"y\"}".into(),
                distance_m: 40.0,
                eta: Some(ts + 5_000),
                scheduled: Some(ts + 4_000),
                delay_s: Some(-3),
            }),
            delay_s: full.then_some(12),
            trip_inferred: full.then_some(false),
            accuracy: full.then_some(4.0),
            altitude: full.then_some(-2.5),
            battery: full.then_some(0.5),
            received_at: ts + 3,
            processed_at: ts + 4,
        }
    }

    /// The state JSON as the broker writes it (`vehicles/{id}` payload, the bridge's frames).
    fn json(s: &VehicleState) -> String {
        let mut out = Vec::new();
        s.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn scanned(text: &str) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        states(text.as_bytes(), |v, ts| out.push((v.to_string(), ts)));
        out
    }

    /// What a full parse of the same text finds.
    fn parsed(text: &str) -> Vec<(String, i64)> {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let one = |s: &serde_json::Value| {
            (
                s["vehicle"].as_str().unwrap_or_default().to_string(),
                s["ts"].as_i64().unwrap_or_default(),
            )
        };
        match v["type"].as_str() {
            Some("update") => vec![one(&v["vehicle"])],
            Some("updates") => v["vehicles"]
                .as_array()
                .map(|a| a.iter().map(one).collect())
                .unwrap_or_default(),
            _ => vec![one(&v)],
        }
    }

    #[test]
    fn finds_what_a_full_parse_finds_in_states_and_frames() {
        let states: Vec<VehicleState> = vec![
            state("b12-0", 1_764_000_000_000, false),
            state("b12-1", 1_764_000_000_001, true),
            state("b12-22", 1_764_000_000_017, true),
            state("b12-3", 1_764_000_000_500, false),
        ];
        let texts: Vec<String> = states.iter().map(json).collect();
        // The frames as bridge/src/frames.rs assembles them.
        let mut frames: Vec<String> = texts.clone();
        for t in &texts {
            frames.push(format!(r#"{{"type":"update","sub":"s","vehicle":{t}}}"#));
            frames.push(format!(
                r#"{{"type":"update","sub":"a \"vehicle\":\"q","vehicle":{t}}}"#
            ));
        }
        frames.push(format!(
            r#"{{"type":"updates","sub":"s","vehicles":[{}]}}"#,
            texts.join(",")
        ));
        frames.push(r#"{"type":"updates","sub":"s","vehicles":[]}"#.to_string());
        for f in &frames {
            assert_eq!(scanned(f), parsed(f), "{f}");
        }
        assert_eq!(scanned(&frames[frames.len() - 2]).len(), 4);
    }

    #[test]
    fn frame_kinds() {
        assert_eq!(frame(br#"{"type":"update","sub":"s"}"#), Frame::States);
        assert_eq!(frame(br#"{"type":"updates","sub":"s"}"#), Frame::States);
        assert_eq!(frame(br#"{"type":"snapshot","sub":"s"}"#), Frame::Other);
        assert_eq!(frame(br#"{"type":"event","sub":"s"}"#), Frame::Other);
        assert_eq!(frame(br#"{"type":"error","error":{}}"#), Frame::Parse);
        assert_eq!(frame(br#"{ "type":"update"}"#), Frame::Parse);
        assert_eq!(frame(br#"{"sub":"s","type":"update"}"#), Frame::Parse);
    }

    #[test]
    fn integers_and_bad_ts() {
        assert_eq!(integer(b"123,"), (Some(123), 3));
        assert_eq!(integer(b"-5}"), (Some(-5), 2));
        assert_eq!(integer(b"1.5"), (None, 1));
        assert_eq!(integer(b"null"), (None, 0));
        assert_eq!(integer(b"99999999999999999999"), (None, 20));
        assert!(scanned(r#"{"vehicle":"a","ts":1.5}"#).is_empty());
        assert!(scanned(r#"{"vehicle":"a"}"#).is_empty());
    }
}
