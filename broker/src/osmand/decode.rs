//! Decoding an OsmAnd / Traccar Client request into [`Fix`]es (docs/ingest-http.md), as Traccar's
//! server reads them:
//!
//! - **Query string or form body** (OsmAnd's URL template, Traccar Client before 9): `id` or
//!   `deviceid`; `lat` and `lon`, or `location=lat,lon`; `timestamp` in Unix seconds (below
//!   2^31), milliseconds, ISO 8601 (`2025-01-01T12:00:00Z`; without an offset: UTC) or
//!   `yyyy-MM-dd HH:mm:ss` (UTC), absent = now; `speed` in **knots**; `bearing` or `heading`;
//!   `altitude` m; `accuracy` m; `hdop` (when `accuracy` is absent, accuracy = 5 m × HDOP, a
//!   typical GPS range error); `batt` percent. Other keys (`valid`, `cell`, `wifi`, `charge`, ...)
//!   are ignored. Keys and values must be UTF-8 after percent-decoding.
//! - **JSON body of Traccar Client 9+**: `device_id`, `location` (an object, or an array of them
//!   for a batch) with `timestamp` (ISO 8601), `coords.{latitude, longitude, speed (m/s),
//!   heading, accuracy, altitude}`, `battery.level` (0 to 1), `is_moving`. Negative speed,
//!   heading, accuracy or battery level mean "unknown" to that client and are left out; a fix
//!   with `is_moving: false` and no speed has speed 0.
//!
//! Everything else (ranges, the timestamp window, teleports) is the pipeline's validation.

use geo_engine::{Fix, Point, RejectReason, Rejection};
use serde_json::{Map, Value};

/// Most key/value pairs read from one query string or form (Traccar Client sends about 12).
const MAX_PAIRS: usize = 128;

/// 1 knot in m/s (1852 m per hour).
const KNOT_MS: f64 = 1852.0 / 3600.0;

/// Metres of accuracy per unit of HDOP when only `hdop` is given.
const HDOP_M: f64 = 5.0;

/// One request's device and fixes.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub device: String,
    pub fixes: Vec<Fix>,
}

/// A query string or `application/x-www-form-urlencoded` body (without the `?`).
///
/// # Errors
/// A [`Rejection`] naming the parameter: missing id or position, a value that is not a finite
/// number or a timestamp, text that is not UTF-8, too many parameters.
pub fn form(raw: &[u8], now_ms: i64) -> Result<Report, Rejection> {
    let mut device = None;
    let (mut lat, mut lon, mut ts) = (None, None, None);
    let mut fix = Fix::new(Point::new(0.0, 0.0), 0);
    let mut hdop = None;
    for (i, pair) in raw
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if i >= MAX_PAIRS {
            return Err(invalid(
                "query",
                format!("more than {MAX_PAIRS} parameters"),
            ));
        }
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let key = decode(key)?;
        let value = decode(value)?;
        match key.as_str() {
            "id" | "deviceid" => device = Some(value),
            "lat" => lat = Some(number("lat", &value)?),
            "lon" => lon = Some(number("lon", &value)?),
            "location" => {
                let (a, b) = value
                    .split_once(',')
                    .ok_or_else(|| invalid("location", "expected lat,lon".into()))?;
                lat = Some(number("location", a)?);
                lon = Some(number("location", b)?);
            }
            "timestamp" => ts = Some(timestamp(&value)?),
            "speed" => fix.speed = Some(number("speed", &value)? * KNOT_MS),
            "bearing" | "heading" => fix.heading = Some(number("bearing", &value)?),
            "altitude" => fix.altitude = Some(number("altitude", &value)?),
            "accuracy" => fix.accuracy = Some(number("accuracy", &value)?),
            "hdop" => hdop = Some(number("hdop", &value)?),
            "batt" => fix.battery = Some(number("batt", &value)?),
            _ => {}
        }
    }
    let device = device_id(device, "id")?;
    fix.lat = lat.ok_or_else(|| missing("lat"))?;
    fix.lon = lon.ok_or_else(|| missing("lon"))?;
    fix.ts = ts.unwrap_or(now_ms);
    if fix.accuracy.is_none() {
        fix.accuracy = hdop.map(|h| h * HDOP_M);
    }
    Ok(Report {
        device,
        fixes: vec![fix.checked_extras()?],
    })
}

/// The JSON body of Traccar Client 9+.
///
/// # Errors
/// A [`Rejection`] naming the field: not JSON, no `device_id` or `location`, a coordinate that
/// is missing or not a number, a bad timestamp.
pub fn json(body: &[u8], now_ms: i64) -> Result<Report, Rejection> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(RejectReason::BadJson, "payload", e.to_string()))?;
    let Value::Object(root) = v else {
        return Err(invalid("payload", "expected a JSON object".into()));
    };
    let device = match root.get("device_id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid("device_id", "expected a string".into())),
        None => None,
    };
    let device = device_id(device, "device_id")?;
    let fixes = match root.get("location") {
        Some(Value::Object(loc)) => vec![location(loc, now_ms)?],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::Object(loc) => location(loc, now_ms),
                _ => Err(invalid("location", "expected objects".into())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("location", "expected an object".into())),
        None => return Err(missing("location")),
    };
    Ok(Report { device, fixes })
}

/// One `location` object.
fn location(loc: &Map<String, Value>, now_ms: i64) -> Result<Fix, Rejection> {
    let ts = match loc.get("timestamp") {
        None | Some(Value::Null) => now_ms,
        Some(Value::String(s)) => timestamp(s)?,
        Some(Value::Number(n)) => timestamp(&n.to_string())?,
        Some(_) => return Err(invalid("timestamp", "expected ISO 8601 text".into())),
    };
    let Some(Value::Object(coords)) = loc.get("coords") else {
        return Err(missing("coords"));
    };
    let get = |key: &'static str| -> Result<Option<f64>, Rejection> {
        match coords.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| invalid(key, "expected a number".into())),
        }
    };
    let known = |x: Option<f64>| x.filter(|v| *v >= 0.0);
    let lat = get("latitude")?.ok_or_else(|| missing("latitude"))?;
    let lon = get("longitude")?.ok_or_else(|| missing("longitude"))?;
    let mut fix = Fix::new(Point::new(lon, lat), ts);
    fix.speed = known(get("speed")?);
    fix.heading = known(get("heading")?);
    fix.accuracy = known(get("accuracy")?);
    fix.altitude = get("altitude")?;
    fix.battery = match loc.get("battery").and_then(|b| b.get("level")) {
        None | Some(Value::Null) => None,
        Some(v) => {
            let level = v
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| invalid("battery", "expected a number".into()))?;
            known(Some(level)).map(|l| (l * 100.0).min(100.0))
        }
    };
    if loc.get("is_moving") == Some(&Value::Bool(false)) && fix.speed.is_none() {
        fix.speed = Some(0.0);
    }
    fix.checked_extras()
}

/// Percent-decoding with `+` as a space; the result must be UTF-8.
fn decode(raw: &[u8]) -> Result<String, Rejection> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("query", "not UTF-8 after percent-decoding".into()))
}

/// A finite number (`NaN` and `inf` are not).
fn number(field: &'static str, v: &str) -> Result<f64, Rejection> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| invalid(field, format!("expected a number, got {:?}", clip(v))))
}

/// Unix seconds (below 2^31, as Traccar reads them), milliseconds, or ISO 8601.
fn timestamp(v: &str) -> Result<i64, Rejection> {
    let v = v.trim();
    let bad = || {
        invalid(
            "timestamp",
            format!(
                "expected Unix seconds, milliseconds or ISO 8601, got {:?}",
                clip(v)
            ),
        )
    };
    if let Ok(n) = v.parse::<i64>() {
        return Ok(if n < i64::from(i32::MAX) {
            n.saturating_mul(1000)
        } else {
            n
        });
    }
    if let Ok(f) = v.parse::<f64>() {
        if !f.is_finite() || f.abs() > 9.0e15 {
            return Err(bad());
        }
        let ms = if f.abs() < f64::from(i32::MAX) {
            f * 1000.0
        } else {
            f
        };
        return Ok(ms.round() as i64);
    }
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // No offset: UTC, as Traccar's server reads it.
    let civil: jiff::civil::DateTime = v.parse().map_err(|_| bad())?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|_| bad())
}

/// A device id usable as a vehicle id (a topic level).
fn device_id(id: Option<String>, field: &'static str) -> Result<String, Rejection> {
    let id = id.ok_or_else(|| missing(field))?;
    if id.is_empty() || id.len() > 128 || id.contains(['/', '+', '#', '\0']) {
        return Err(invalid(
            field,
            "a device id is 1-128 bytes without / + #".into(),
        ));
    }
    Ok(id)
}

/// At most 40 characters of a value, for error messages.
fn clip(v: &str) -> String {
    v.chars().take(40).collect()
}

fn missing(field: &'static str) -> Rejection {
    Rejection::missing(field)
}

fn invalid(field: &'static str, what: String) -> Rejection {
    Rejection::invalid(field, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_763_700_000_000;

    #[test]
    fn traccar_client_query_with_speed_in_knots() {
        let q = b"id=bus-7&timestamp=1763699990&lat=-16.92&lon=145.77&speed=10.0&bearing=90&altitude=12.5&accuracy=8&batt=77";
        let r = form(q, NOW).unwrap();
        assert_eq!(r.device, "bus-7");
        let f = &r.fixes[0];
        assert_eq!((f.lat, f.lon, f.ts), (-16.92, 145.77, 1_763_699_990_000));
        assert!((f.speed.unwrap() - 5.144_444).abs() < 1e-5, "{:?}", f.speed);
        assert_eq!(
            (f.heading, f.altitude, f.accuracy, f.battery),
            (Some(90.0), Some(12.5), Some(8.0), Some(77.0))
        );
    }

    #[test]
    fn osmand_template_location_and_timestamp_forms() {
        let r = form(
            b"deviceid=p1&location=-16.9%2C145.7&timestamp=1763699990123&hdop=2",
            NOW,
        )
        .unwrap();
        let f = &r.fixes[0];
        assert_eq!(
            (r.device.as_str(), f.lat, f.lon, f.ts),
            ("p1", -16.9, 145.7, 1_763_699_990_123)
        );
        assert_eq!(f.accuracy, Some(10.0));
        for (text, ms) in [
            ("2025-11-21T04:40:00Z", 1_763_700_000_000),
            ("2025-11-21T04:40:00.000%2B00:00", 1_763_700_000_000),
            ("2025-11-21+04:40:00", 1_763_700_000_000),
            ("1763700000.5", 1_763_700_000_500),
        ] {
            let q = format!("id=a&lat=1&lon=2&timestamp={text}");
            assert_eq!(form(q.as_bytes(), NOW).unwrap().fixes[0].ts, ms, "{text}");
        }
        assert_eq!(
            form(b"id=a&lat=1&lon=2", NOW).unwrap().fixes[0].ts,
            NOW,
            "absent = now"
        );
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let cases: [(&[u8], &str); 9] = [
            (b"lat=1&lon=2", "id"),
            (b"id=a&lon=2", "lat"),
            (b"id=a&lat=NaN&lon=2", "lat"),
            (b"id=a&lat=1&lon=inf", "lon"),
            (b"id=a&lat=1&lon=2&timestamp=yesterday", "timestamp"),
            (b"id=a&lat=1&lon=2&speed=fast", "speed"),
            (b"id=%FF&lat=1&lon=2", "query"),
            (b"id=a%2Fb&lat=1&lon=2", "id"),
            (b"id=a&location=12", "location"),
        ];
        for (q, field) in cases {
            let r = form(q, NOW).unwrap_err();
            assert_eq!(r.field, field, "{}", String::from_utf8_lossy(q));
        }
        let many = "x=1&".repeat(MAX_PAIRS + 1);
        assert_eq!(form(many.as_bytes(), NOW).unwrap_err().field, "query");
    }

    #[test]
    fn traccar_client_9_json() {
        let body = br#"{"location":{"timestamp":"2025-11-21T04:40:00.000Z","coords":{"latitude":-16.92,"longitude":145.77,"accuracy":5,"speed":4.5,"heading":-1,"altitude":30},"is_moving":true,"odometer":0,"event":"motionchange","battery":{"level":0.42,"is_charging":false},"activity":{"type":"still"},"extras":{}},"device_id":"bus-9"}"#;
        let r = json(body, NOW).unwrap();
        assert_eq!(r.device, "bus-9");
        let f = &r.fixes[0];
        assert_eq!((f.lat, f.lon, f.ts), (-16.92, 145.77, 1_763_700_000_000));
        assert_eq!(
            (f.speed, f.heading, f.accuracy, f.altitude),
            (Some(4.5), None, Some(5.0), Some(30.0))
        );
        assert!((f.battery.unwrap() - 42.0).abs() < 1e-9);
        let still = br#"{"device_id":7,"location":[{"coords":{"latitude":1,"longitude":2,"speed":-1},"is_moving":false}]}"#;
        let r = json(still, NOW).unwrap();
        assert_eq!(
            (r.device.as_str(), r.fixes[0].speed, r.fixes[0].ts),
            ("7", Some(0.0), NOW)
        );
    }

    #[test]
    fn bad_json_names_the_field() {
        let cases: [(&[u8], &str); 6] = [
            (b"{", "payload"),
            (br#"{"location":{"coords":{"latitude":1,"longitude":2}}}"#, "device_id"),
            (br#"{"device_id":"a"}"#, "location"),
            (br#"{"device_id":"a","location":{"coords":{"longitude":2}}}"#, "latitude"),
            (br#"{"device_id":"a","location":{"coords":{"latitude":"x","longitude":2}}}"#, "latitude"),
            (br#"{"device_id":"a","location":{"timestamp":"3000-13-01","coords":{"latitude":1,"longitude":2}}}"#, "timestamp"),
        ];
        for (body, field) in cases {
            assert_eq!(
                json(body, NOW).unwrap_err().field,
                field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
