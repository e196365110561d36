//! The tables (docs/history.md), their day partitions and retention.
//!
//! Both tables are range-partitioned by `ts`, one partition per UTC day named
//! `fleetmq_positions_pYYYYMMDD` / `fleetmq_events_pYYYYMMDD`, so that a day-bounded query
//! touches one or two partitions and retention is a `DROP TABLE` of whole days instead of a
//! `DELETE` that would bloat the table and the WAL.

use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::Client;

/// Milliseconds in a UTC day (partitions are UTC days; Unix time has no leap seconds).
pub const DAY_MS: i64 = 86_400_000;

/// The two partitioned tables.
pub const TABLES: [&str; 2] = ["fleetmq_positions", "fleetmq_events"];

/// Created on start; `IF NOT EXISTS` makes it idempotent, so this is also the migration of an
/// empty database. The primary keys are what make a replayed row a no-op (`ON CONFLICT DO
/// NOTHING`); they include `ts` because PostgreSQL requires the partition key in them.
/// `subject` (stop or geofence id, else '') tells apart two events of one kind at one instant.
const CREATE: &str = "
CREATE TABLE IF NOT EXISTS fleetmq_positions (
    vehicle     text        NOT NULL,
    ts          timestamptz NOT NULL,
    lat         float8      NOT NULL,
    lon         float8      NOT NULL,
    raw_lat     float8      NOT NULL,
    raw_lon     float8      NOT NULL,
    speed       float8,
    heading     float8,
    accuracy    float8,
    route       text,
    trip        text,
    on_route    boolean,
    off_route_m float8,
    delay_s     integer,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (vehicle, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE IF NOT EXISTS fleetmq_events (
    vehicle text        NOT NULL,
    ts      timestamptz NOT NULL,
    kind    text        NOT NULL,
    subject text        NOT NULL DEFAULT '',
    payload jsonb       NOT NULL,
    PRIMARY KEY (vehicle, ts, kind, subject)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS fleetmq_events_ts ON fleetmq_events (ts);
";

/// Per-connection staging tables for COPY: COPY cannot skip duplicates, so rows go here first
/// and then into the real tables with `ON CONFLICT DO NOTHING`. Emptied by every commit.
const STAGING: &str = "
CREATE TEMP TABLE IF NOT EXISTS fleetmq_positions_stage
    (LIKE fleetmq_positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS fleetmq_events_stage
    (LIKE fleetmq_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
";

/// Creates the tables and this connection's staging tables.
///
/// # Errors
/// The database refused the DDL (no rights, a table of that name with another shape).
pub async fn migrate(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(CREATE).await?;
    client.batch_execute(STAGING).await
}

/// The UTC day (days since the Unix epoch) that holds `ts_ms`.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// `YYYYMMDD` of a day number.
fn day_name(day: i64) -> String {
    Timestamp::from_millisecond(day * DAY_MS)
        .map(|t| t.strftime("%Y%m%d").to_string())
        .unwrap_or_else(|_| format!("d{day}"))
}

/// The day number of a partition's name (`<table>_pYYYYMMDD`), `None` for other tables.
fn day_from_name(table: &str, name: &str) -> Option<i64> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T00:00:00Z",
        &digits[..4],
        &digits[4..6],
        &digits[6..]
    );
    let t: Timestamp = iso.parse().ok()?;
    Some(day_of(t.as_millisecond()))
}

/// Creates both tables' partitions for `day` when missing.
///
/// # Errors
/// The database refused the DDL.
pub async fn ensure_day(client: &Client, day: i64) -> Result<(), tokio_postgres::Error> {
    let name = day_name(day);
    let mut sql = String::new();
    for table in TABLES {
        // Bounds as epoch seconds: no time-zone setting of the session can shift them.
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table}_p{name} PARTITION OF {table} \
             FOR VALUES FROM (to_timestamp({from})) TO (to_timestamp({to}));\n",
            from = day * 86_400,
            to = (day + 1) * 86_400,
        ));
    }
    client.batch_execute(&sql).await
}

/// Drops every partition whose whole day ended more than `retention` before `now_ms`; returns
/// the days dropped.
///
/// # Errors
/// The database refused the catalogue query or a `DROP`.
pub async fn drop_expired(
    client: &Client,
    retention: Duration,
    now_ms: i64,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let keep_from = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let rows = client
        .query(
            "SELECT c.relname::text, p.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = ANY($1)",
            &[&TABLES.to_vec()],
        )
        .await?;
    let mut dropped = Vec::new();
    for row in rows {
        let (name, table): (String, String) = (row.get(0), row.get(1));
        let Some(day) = day_from_name(&table, &name) else {
            continue;
        };
        if (day + 1) * DAY_MS <= keep_from {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await?;
            tracing::info!(partition = %name, "history: dropped a partition past retention");
            dropped.push(day);
        }
    }
    dropped.sort_unstable();
    dropped.dedup();
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        let ts = 1_764_460_800_000; // 2025-11-30T00:00:00Z
        let day = day_of(ts);
        assert_eq!(day_name(day), "20251130");
        assert_eq!(day_of(ts - 1), day - 1);
        assert_eq!(
            day_from_name("fleetmq_positions", "fleetmq_positions_p20251130"),
            Some(day)
        );
        assert_eq!(
            day_from_name("fleetmq_events", "fleetmq_positions_p20251130"),
            None
        );
        assert_eq!(
            day_from_name("fleetmq_events", "fleetmq_events_p2025113"),
            None
        );
        assert_eq!(
            day_from_name("fleetmq_events", "fleetmq_events_stage"),
            None
        );
    }
}
