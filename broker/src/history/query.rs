//! Reading history back for the HTTP API: one vehicle's positions in a time range, and events
//! by vehicle, kind and time. Both are index range scans on the primary key or `ts`, pruned to
//! the partitions of the range.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use super::row::time;

/// A `timestamptz` as Unix milliseconds (before 1970: negative).
fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `fleetmq_positions` of `vehicle` with `from_ms <= ts <= to_ms`, oldest first, at most `limit`,
/// as JSON objects (absent values omitted, times in Unix ms).
///
/// # Errors
/// The query failed (connection lost, statement timeout).
pub async fn positions(
    client: &Client,
    vehicle: &str,
    from_ms: i64,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let rows = client
        .query(
            // Times come back as timestamptz and are turned into Unix ms here: `extract(epoch)`
            // is numeric arithmetic, which was half the query's time at 10,000 rows.
            "SELECT ts, lat, lon, raw_lat, raw_lon, speed, \
             heading, accuracy, route, trip, on_route, off_route_m, delay_s, received_at \
             FROM fleetmq_positions WHERE vehicle = $1 AND ts >= $2 AND ts <= $3 \
             ORDER BY ts LIMIT $4",
            &[&vehicle, &time(from_ms), &time(to_ms), &limit],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut o = Map::new();
        o.insert("vehicle".into(), json!(vehicle));
        o.insert("ts".into(), json!(unix_ms(r.get(0))));
        let floats = [
            (1, "lat"),
            (2, "lon"),
            (3, "raw_lat"),
            (4, "raw_lon"),
            (5, "speed"),
            (6, "heading"),
            (7, "accuracy"),
        ];
        for (i, name) in floats {
            if let Some(v) = r.get::<_, Option<f64>>(i) {
                o.insert(name.into(), json!(v));
            }
        }
        for (i, name) in [(8, "route"), (9, "trip")] {
            if let Some(v) = r.get::<_, Option<String>>(i) {
                o.insert(name.into(), json!(v));
            }
        }
        if let Some(v) = r.get::<_, Option<bool>>(10) {
            o.insert("on_route".into(), json!(v));
        }
        if let Some(v) = r.get::<_, Option<f64>>(11) {
            o.insert("off_route_m".into(), json!(v));
        }
        if let Some(v) = r.get::<_, Option<i32>>(12) {
            o.insert("delay_s".into(), json!(v));
        }
        o.insert("received_at".into(), json!(unix_ms(r.get(13))));
        out.push(Value::Object(o));
    }
    Ok(out)
}

/// Events' payloads with `from_ms <= ts <= to_ms`, optionally of one vehicle and one kind,
/// oldest first, at most `limit`.
///
/// # Errors
/// The query failed.
pub async fn events(
    client: &Client,
    vehicle: Option<&str>,
    kind: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    limit: i64,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT payload FROM fleetmq_events \
             WHERE ($1::text IS NULL OR vehicle = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ts >= $3 AND ts <= $4 ORDER BY ts LIMIT $5",
            &[&vehicle, &kind, &time(from_ms), &time(to_ms), &limit],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get::<_, Value>(0)).collect())
}
