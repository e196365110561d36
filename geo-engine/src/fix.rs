//! The input of the pipeline: a location fix as published on `fleet/{id}/location`
//! (docs/topics-and-payloads.md#location-updates), and its parsing from JSON, one object or a batch
//! array.

mod field;

use geo::Point;
use serde::{Deserialize, Serialize};

use crate::validate::{RejectReason, Rejection};
use field::Field;

/// One location update from a device. The fields mirror the JSON payload
/// (docs/topics-and-payloads.md#location-updates); in code, take the position as a [`Point`] with
/// [`Fix::position`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// WGS84 latitude, degrees.
    pub lat: f64,
    /// WGS84 longitude, degrees.
    pub lon: f64,
    /// Device time, Unix milliseconds.
    pub ts: i64,
    /// Reported ground speed, m/s.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub speed: Option<f64>,
    /// Reported heading, degrees clockwise from north.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub heading: Option<f64>,
    /// Reported horizontal accuracy (one standard deviation), metres.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accuracy: Option<f64>,
    /// Route the vehicle says it serves.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// Trip the vehicle says it runs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trip: Option<String>,
    /// Per-vehicle message counter.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seq: Option<u64>,
    /// Reported altitude above sea level, metres; passed through to the state, not processed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub altitude: Option<f64>,
    /// Reported battery level of the device, percent (0 to 100); passed through to the state.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub battery: Option<f64>,
}

impl Fix {
    /// A fix at `at` (x = lon, y = lat, degrees) with only the required fields.
    pub fn new(at: Point<f64>, ts: i64) -> Fix {
        Fix {
            lat: at.y(),
            lon: at.x(),
            ts,
            speed: None,
            heading: None,
            accuracy: None,
            route: None,
            trip: None,
            seq: None,
            altitude: None,
            battery: None,
        }
    }

    /// The reported position (x = lon, y = lat, degrees).
    pub fn position(&self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }

    /// This fix if its pass-through fields are in range: `altitude` -1,000 to 100,000 m,
    /// `battery` 0 to 100 %. No pipeline step reads them, so this is their only check; a fix
    /// built by hand (another protocol's decoder) calls it as [`parse_fixes`] does.
    ///
    /// # Errors
    /// `invalid_field` naming the field.
    pub fn checked_extras(self) -> Result<Fix, Rejection> {
        let within = |x: Option<f64>, field: &'static str, min: f64, max: f64| match x {
            Some(x) if !(min..=max).contains(&x) => {
                Err(invalid(field, &format!("expected {min} to {max}, got {x}")))
            }
            _ => Ok(()),
        };
        within(self.altitude, "altitude", -1_000.0, 100_000.0)?;
        within(self.battery, "battery", 0.0, 100.0)?;
        Ok(self)
    }

    /// The docs/topics-and-payloads.md#location-updates JSON payload of this fix.
    pub fn to_json(&self) -> String {
        // Serializing a struct of numbers and strings cannot fail; fall back to "{}" anyway.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Parses a `fleet/{id}/location` payload: one JSON object or an array of them (a batch),
/// returned sorted by `ts` (stable, so equal timestamps keep their order).
///
/// # Errors
/// `bad_json` when the payload is not JSON or not an object/array; otherwise the first
/// element's problem, naming the field (`missing_field`, `invalid_field`).
pub fn parse_fixes(payload: &[u8]) -> Result<Vec<Fix>, Rejection> {
    // Typed deserialization into fields borrowed from the payload (no `Value` tree, no string
    // copies); the fields stay loosely typed so a wrong type is reported by field name rather
    // than as a serde message.
    let bad =
        |e: serde_json::Error| Rejection::new(RejectReason::BadJson, "payload", e.to_string());
    let mut fixes = match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => vec![fix_from_raw(
            serde_json::from_slice::<RawFix>(payload).map_err(bad)?,
        )?],
        Some(b'[') => {
            let items: Vec<RawFix> = serde_json::from_slice(payload).map_err(bad)?;
            if items.is_empty() {
                return Err(Rejection::new(
                    RejectReason::BadJson,
                    "payload",
                    "empty batch",
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(fix_from_raw(item).map_err(|mut r| {
                    r.message = format!("batch element {i}: {}", r.message);
                    r
                })?);
            }
            out
        }
        _ => {
            return Err(Rejection::new(
                RejectReason::BadJson,
                "payload",
                "expected a JSON object or array",
            ));
        }
    };
    fixes.sort_by_key(|f| f.ts);
    Ok(fixes)
}

/// The JSON object as sent, borrowing from the payload; unknown fields are ignored.
#[derive(Deserialize)]
struct RawFix<'a> {
    #[serde(default, borrow)]
    lat: Field<'a>,
    #[serde(default, borrow)]
    lon: Field<'a>,
    #[serde(default, borrow)]
    ts: Field<'a>,
    #[serde(default, borrow)]
    speed: Field<'a>,
    #[serde(default, borrow)]
    heading: Field<'a>,
    #[serde(default, borrow)]
    accuracy: Field<'a>,
    #[serde(default, borrow)]
    route: Field<'a>,
    #[serde(default, borrow)]
    trip: Field<'a>,
    #[serde(default, borrow)]
    seq: Field<'a>,
    #[serde(default, borrow)]
    altitude: Field<'a>,
    #[serde(default, borrow)]
    battery: Field<'a>,
}

/// Builds a fix, naming the first missing or ill-typed field.
fn fix_from_raw(raw: RawFix) -> Result<Fix, Rejection> {
    let lat = required_f64(&raw.lat, "lat")?;
    let lon = required_f64(&raw.lon, "lon")?;
    let ts = match &raw.ts {
        Field::Null => return Err(missing("ts")),
        v => as_ts(v).ok_or_else(|| invalid("ts", "expected Unix milliseconds"))?,
    };
    let seq = match &raw.seq {
        Field::Null => None,
        v => Some(
            v.as_u64()
                .ok_or_else(|| invalid("seq", "expected a non-negative integer"))?,
        ),
    };
    Fix {
        lat,
        lon,
        ts,
        speed: optional_f64(&raw.speed, "speed")?,
        heading: optional_f64(&raw.heading, "heading")?,
        accuracy: optional_f64(&raw.accuracy, "accuracy")?,
        route: optional_string(raw.route, "route")?,
        trip: optional_string(raw.trip, "trip")?,
        seq,
        altitude: optional_f64(&raw.altitude, "altitude")?,
        battery: optional_f64(&raw.battery, "battery")?,
    }
    .checked_extras()
}

/// Accepts an integer, or a float with no fractional part, as milliseconds.
fn as_ts(v: &Field) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    // Bounds keep the cast exact; the range check in `validate` does the rest.
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn required_f64(v: &Field, field: &'static str) -> Result<f64, Rejection> {
    optional_f64(v, field)?.ok_or_else(|| missing(field))
}

fn optional_f64(v: &Field, field: &'static str) -> Result<Option<f64>, Rejection> {
    match v {
        Field::Null => Ok(None),
        v => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(field, "expected a number")),
    }
}

fn optional_string(v: Field, field: &'static str) -> Result<Option<String>, Rejection> {
    match v {
        Field::Null => Ok(None),
        Field::Str(s) if s.len() <= 256 => Ok(Some(s.into_owned())),
        Field::Str(_) => Err(invalid(field, "longer than 256 bytes")),
        // Route and trip ids are often numeric in feeds; accept a number as its decimal text.
        v => v
            .number_text()
            .map(Some)
            .ok_or_else(|| invalid(field, "expected a string")),
    }
}

fn missing(field: &'static str) -> Rejection {
    Rejection::missing(field)
}

fn invalid(field: &'static str, what: &str) -> Rejection {
    Rejection::invalid(field, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let p =
            br#"{"lat": 52.52, "lon": 13.405, "ts": 1763700000000, "speed": 11.2, "heading": 90,
            "accuracy": 5, "route": "M10", "trip": "M10-0712", "seq": 42}"#;
        let f = parse_fixes(p).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].ts, 1763700000000);
        assert_eq!(f[0].route.as_deref(), Some("M10"));
        assert_eq!(f[0].seq, Some(42));
        assert_eq!(f[0].speed, Some(11.2));
    }

    #[test]
    fn batch_sorted_by_ts() {
        let p =
            br#"[{"lat":1,"lon":2,"ts":30},{"lat":1,"lon":2,"ts":10},{"lat":1,"lon":2,"ts":20}]"#;
        let ts: Vec<i64> = parse_fixes(p).unwrap().iter().map(|f| f.ts).collect();
        assert_eq!(ts, vec![10, 20, 30]);
    }

    #[test]
    fn rejections_name_the_field() {
        let cases: [(&[u8], RejectReason, &str); 7] = [
            (b"not json", RejectReason::BadJson, "payload"),
            (b"42", RejectReason::BadJson, "payload"),
            (br#"{"lon":1,"ts":1}"#, RejectReason::MissingField, "lat"),
            (br#"{"lat":1,"ts":1}"#, RejectReason::MissingField, "lon"),
            (br#"{"lat":1,"lon":1}"#, RejectReason::MissingField, "ts"),
            (
                br#"{"lat":"x","lon":1,"ts":1}"#,
                RejectReason::InvalidField,
                "lat",
            ),
            (
                br#"[{"lat":1,"lon":1,"ts":1},{"lat":1,"lon":1,"ts":2,"speed":"fast"}]"#,
                RejectReason::InvalidField,
                "speed",
            ),
        ];
        for (payload, reason, field) in cases {
            let r = parse_fixes(payload).unwrap_err();
            assert_eq!(
                (r.reason, r.field),
                (reason, field),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn altitude_and_battery_pass_through_within_range() {
        let f = parse_fixes(br#"{"lat":1,"lon":2,"ts":3,"altitude":12.5,"battery":80}"#).unwrap();
        assert_eq!((f[0].altitude, f[0].battery), (Some(12.5), Some(80.0)));
        let r = parse_fixes(br#"{"lat":1,"lon":2,"ts":3,"battery":101}"#).unwrap_err();
        assert_eq!((r.reason, r.field), (RejectReason::InvalidField, "battery"));
        let r = parse_fixes(br#"{"lat":1,"lon":2,"ts":3,"altitude":1e9}"#).unwrap_err();
        assert_eq!(r.field, "altitude");
    }

    #[test]
    fn loose_fields_read_as_before() {
        // Numeric ids become their decimal text, escapes are decoded, null is absent.
        let f = parse_fixes(
            br#"{"lat":1,"lon":2,"ts":3.0,"route":110,"trip":"a\"b","speed":null,"seq":18446744073709551615,"x":{"y":[1]}}"#,
        )
        .unwrap();
        assert_eq!(f[0].ts, 3);
        assert_eq!(f[0].route.as_deref(), Some("110"));
        assert_eq!(f[0].trip.as_deref(), Some("a\"b"));
        assert_eq!((f[0].speed, f[0].seq), (None, Some(u64::MAX)));
        let f = parse_fixes(br#"{"lat":1,"lon":2,"ts":3,"route":1.5e20}"#).unwrap();
        // As `Value::Number` printed it.
        assert_eq!(f[0].route.as_deref(), Some("1.5e+20"));
        let cases: [(&[u8], RejectReason, &str); 6] = [
            (
                br#"{"lat":1,"lon":2,"ts":3,"seq":1.5}"#,
                RejectReason::InvalidField,
                "seq",
            ),
            (
                br#"{"lat":1,"lon":2,"ts":3,"seq":-1}"#,
                RejectReason::InvalidField,
                "seq",
            ),
            (
                br#"{"lat":1,"lon":2,"ts":3.5}"#,
                RejectReason::InvalidField,
                "ts",
            ),
            (
                br#"{"lat":true,"lon":2,"ts":3}"#,
                RejectReason::InvalidField,
                "lat",
            ),
            (
                br#"{"lat":1,"lon":2,"ts":3,"route":[]}"#,
                RejectReason::InvalidField,
                "route",
            ),
            (
                br#"{"lat":1,"lat":2,"lon":2,"ts":3}"#,
                RejectReason::BadJson,
                "payload",
            ),
        ];
        for (payload, reason, field) in cases {
            let r = parse_fixes(payload).unwrap_err();
            let text = String::from_utf8_lossy(payload);
            assert_eq!((r.reason, r.field), (reason, field), "{text}");
        }
    }

    #[test]
    fn json_round_trip() {
        let mut f = Fix::new(geo::Point::new(145.7, -16.9), 5);
        f.route = Some("R".into());
        f.altitude = Some(-3.0);
        f.battery = Some(55.0);
        assert_eq!(parse_fixes(f.to_json().as_bytes()).unwrap(), vec![f]);
    }
}
