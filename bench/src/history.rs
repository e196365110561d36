//! `fleetmq-bench history --postgres URL --rows N`: rows per second through fleetmq's own
//! history writer (binary COPY into staging, `INSERT ... ON CONFLICT DO NOTHING`, day
//! partitions), then the time of the history API's query for one vehicle and one day.
//!
//! The rows are processed states of `--vehicles` buses spread evenly over the last 20 hours, so
//! that one vehicle's day holds `rows / vehicles` fixes. Use an empty database: a second run over
//! the same one mostly measures skipped duplicates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use fleetmq::history::{History, MAX_BACKLOG_ROWS};
use geo_engine::{VehicleState, VehicleStatus};
use serde::Serialize;

use crate::report::{self, print_table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// PostgreSQL URL (loopback only), e.g. postgres://fleetmq@127.0.0.1:5432/bench
    #[arg(long)]
    postgres: String,
    /// Rows to write.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Vehicles the rows belong to.
    #[arg(long, default_value_t = 1000)]
    vehicles: u64,
    /// How many times the one-day query is run (the median and the maximum are reported).
    #[arg(long, default_value_t = 21)]
    queries: usize,
    /// Only run the query, over rows an earlier run wrote to the same database.
    #[arg(long)]
    query_only: bool,
    /// Write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct Figures {
    rows: u64,
    seconds: f64,
    rows_per_sec: f64,
    /// Rows the query returned (one vehicle, one day, the API's default limit of 10,000).
    query_rows: usize,
    query_ms_p50: f64,
    query_ms_max: f64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Only a PostgreSQL on this machine: a TCP host on loopback or a Unix socket.
fn check_loopback(url: &str) -> Result<()> {
    let config: tokio_postgres::Config = url.parse()?;
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => {
                let ok = name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !ok {
                    bail!("{name} is not a loopback host: the bench only targets this machine");
                }
            }
            tokio_postgres::config::Host::Unix(_) => {}
        }
    }
    Ok(())
}

fn state(vehicle: &str, i: u64, ts: i64) -> VehicleState {
    let step = i as f64 * 1e-5;
    VehicleState {
        vehicle: vehicle.into(),
        lat: -16.92 + step,
        lon: 145.77 + step,
        raw_lat: -16.92 + step,
        raw_lon: 145.77 + step,
        ts,
        speed: Some(9.5),
        heading: Some(45.0),
        route: Some("110".into()),
        trip: Some("110-0712".into()),
        status: VehicleStatus::Moving,
        on_route: Some(true),
        off_route_m: Some(3.2),
        progress_m: Some(i as f64),
        next_stop: None,
        received_at: ts + 40,
        processed_at: ts + 41,
        accuracy: Some(5.0),
        altitude: None,
        battery: None,
        delay_s: None,
        trip_inferred: None,
    }
}

pub async fn run(args: Args) -> Result<Figures> {
    check_loopback(&args.postgres)?;
    if args.vehicles == 0 || args.rows < args.vehicles {
        bail!("--rows must be at least --vehicles (> 0)");
    }
    let history = Arc::new(History::open(
        &args.postgres,
        Duration::from_secs(30 * 86_400),
    )?);
    history.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !history.is_up() {
        if Instant::now() > deadline {
            bail!("PostgreSQL at the --postgres URL did not answer within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sink = history.sink();
    let per_vehicle = args.rows / args.vehicles;
    let span_ms: i64 = 20 * 3_600_000;
    let step_ms = (span_ms / per_vehicle as i64).max(1);
    let start_ts = now_ms() - span_ms - 60_000;
    let names: Vec<String> = (0..args.vehicles)
        .map(|v| format!("bench-{v:05}"))
        .collect();
    eprintln!(
        "history: writing {} rows ({} vehicles x {per_vehicle})",
        per_vehicle * args.vehicles,
        args.vehicles
    );
    let started = Instant::now();
    let mut pushed = 0u64;
    for i in (0..per_vehicle).filter(|_| !args.query_only) {
        for name in &names {
            // Keep the backlog under its bound: the bench measures the writer, not drops.
            while history.backlog() > MAX_BACKLOG_ROWS / 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sink.state(&Arc::new(state(name, i, start_ts + i as i64 * step_ms)));
            pushed += 1;
        }
        if i % 1000 == 0 && i > 0 {
            eprintln!(
                "history: {pushed} pushed, {:.0} rows/s so far",
                pushed as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let Some(mark) = history.mark() else {
        bail!("PostgreSQL went down during the run");
    };
    while !history.written(mark).await {
        if !history.is_up() {
            bail!("PostgreSQL went down during the run");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let now = now_ms();
    let mut times = Vec::with_capacity(args.queries);
    let mut query_rows = 0;
    for _ in 0..args.queries.max(1) {
        let t = Instant::now();
        let rows = history
            .positions(&names[0], now - 86_400_000, now, 10_000)
            .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        query_rows = rows.len();
    }
    history.close().await;
    times.sort_by(f64::total_cmp);
    let figures = Figures {
        rows: pushed,
        seconds,
        rows_per_sec: pushed as f64 / seconds.max(1e-9),
        query_rows,
        query_ms_p50: times[times.len() / 2],
        query_ms_max: times[times.len() - 1],
    };
    print_table(
        "history",
        &[
            ("rows written".into(), figures.rows.to_string()),
            ("seconds".into(), format!("{:.2}", figures.seconds)),
            ("rows/s".into(), format!("{:.0}", figures.rows_per_sec)),
            ("query rows".into(), figures.query_rows.to_string()),
            (
                "query p50 ms".into(),
                format!("{:.2}", figures.query_ms_p50),
            ),
            (
                "query max ms".into(),
                format!("{:.2}", figures.query_ms_max),
            ),
        ],
    );
    report::write_json(args.json.as_deref(), &figures)?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_postgres() {
        assert!(check_loopback("postgres://u@127.0.0.1:5432/db").is_ok());
        assert!(check_loopback("postgres://u@localhost/db").is_ok());
        assert!(check_loopback("host=/tmp user=u").is_ok());
        assert!(check_loopback("postgres://u@10.1.2.3/db").is_err());
    }
}
