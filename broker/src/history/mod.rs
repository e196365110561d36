//! History in PostgreSQL (docs/history.md): every processed fix and every event, written
//! behind in batches, kept for `--history-retention`, read back by the history API.
//!
//! [`History`] is the handle the server holds. Ingest reaches it through [`HistorySink`] (a
//! [`StateSink`]) that only pushes into a bounded backlog — ingest never waits for PostgreSQL.
//! The writer task owns one connection and empties the backlog in binary-COPY batches; the
//! API reads over a second connection. PostgreSQL being down never stops the broker: rows wait
//! in the backlog (at most [`MAX_BACKLOG_ROWS`]; past it new rows are dropped and counted in
//! `fleetmq_history_dropped_total`) and are written once it is back. Every row goes in with
//! `ON CONFLICT DO NOTHING` on its primary key, so a batch retried after a lost commit, a
//! restart or a replayed fix never writes a row twice.
//!
//! A QoS 1/2 location publish gets its PUBACK once its rows are committed ([`History::mark`],
//! [`History::written`]) while PostgreSQL is up — at most [`ACK_WAIT`] — so an acknowledged fix
//! survives a crash of the broker right after.
//!
//! # Layout
//! - `schema`: tables, day partitions, retention.
//! - `row`: the rows and their COPY columns.
//! - `backlog`: the bounded queue between ingest and the writer.
//! - `writer`: the write-behind task.
//! - `query`: reads for `/history` and `/events`.

mod backlog;
mod query;
mod row;
pub mod schema;
mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geo_engine::{Event, VehicleState};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::ingest::StateSink;
use backlog::Backlog;
use row::Row;
pub use writer::BATCH_MAX;

/// Rows (positions and events together) waiting for PostgreSQL at most. At ~250 bytes a row
/// this is ~125 MB; 10 s of an outage at 50,000 fixes/s.
pub const MAX_BACKLOG_ROWS: usize = 500_000;
/// Longest a QoS 1/2 location publish waits for its rows to be committed before it is
/// acknowledged anyway.
pub const ACK_WAIT: Duration = Duration::from_secs(2);
/// A history query that takes longer is cancelled by PostgreSQL.
const QUERY_TIMEOUT: &str = "10s";
/// How long shutdown waits for the writer's last batches.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why history could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `--postgres` is not a usable connection string.
    #[error("invalid --postgres URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// A PostgreSQL round trip failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// `fleetmq_history_*` counters.
#[derive(Default)]
struct Stats {
    positions: AtomicU64,
    events: AtomicU64,
    batches: AtomicU64,
    partitions_dropped: AtomicU64,
}

/// What the writer, the sink and the handle share.
pub(crate) struct Shared {
    pg: tokio_postgres::Config,
    backlog: Backlog,
    /// Rows taken off the backlog and committed (or given up), in backlog order.
    committed: watch::Sender<u64>,
    up: AtomicBool,
    retention: Duration,
    stats: Stats,
    /// Cancelled by [`History::close`].
    stop: CancellationToken,
}

impl Shared {
    /// Records PostgreSQL's health, logging transitions once.
    fn mark_up(&self, up: bool) {
        let was = self.up.swap(up, Relaxed);
        match (was, up) {
            (false, true) => {
                tracing::info!(backlog = self.backlog.len(), "history: postgres is up")
            }
            (true, false) => tracing::warn!(
                "history: postgres is down: serving on, holding rows in a bounded backlog"
            ),
            _ => {}
        }
    }
}

/// Connects with the connection driven on its own task.
async fn connect(pg: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "history: connection ended");
        }
    });
    Ok(client)
}

/// The history store: cheap to share behind an `Arc`.
pub struct History {
    shared: Arc<Shared>,
    /// The query connection, made on first use and remade when it breaks.
    reader: Mutex<Option<Arc<Client>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl History {
    /// A store for `url` that drops partitions older than `retention`. Connects lazily:
    /// PostgreSQL being down now is not an error.
    ///
    /// # Errors
    /// [`HistoryError::Url`] when `url` is not a PostgreSQL connection string.
    pub fn open(url: &str, retention: Duration) -> Result<History, HistoryError> {
        let mut pg = tokio_postgres::Config::from_str(url).map_err(HistoryError::Url)?;
        // `IF NOT EXISTS` on every start would otherwise log a NOTICE per table and partition.
        pg.connect_timeout(Duration::from_secs(3))
            .application_name("fleetmq")
            .options("-c client_min_messages=warning")
            .keepalives_idle(Duration::from_secs(10));
        let shared = Shared {
            pg,
            backlog: Backlog::new(MAX_BACKLOG_ROWS),
            committed: watch::Sender::new(0),
            up: AtomicBool::new(false),
            retention,
            stats: Stats::default(),
            stop: CancellationToken::new(),
        };
        Ok(History {
            shared: Arc::new(shared),
            reader: Mutex::new(None),
            writer: Mutex::new(None),
        })
    }

    /// Starts the writer (on the current tokio runtime).
    pub fn start(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.is_none() {
            *writer = Some(tokio::spawn(writer::run(self.shared.clone())));
        }
    }

    /// Writes what is buffered (at most [`CLOSE_WAIT`]) and stops the writer.
    pub async fn close(&self) {
        self.shared.stop.cancel();
        let task = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task
            && tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err()
        {
            tracing::warn!(
                backlog = self.shared.backlog.len(),
                "history: postgres did not take the last rows in time"
            );
            task.abort();
        }
    }

    /// The sink to give ingest: it pushes into the backlog and never blocks.
    pub fn sink(&self) -> Arc<dyn StateSink> {
        Arc::new(HistorySink(self.shared.clone()))
    }

    /// Whether the writer's connection is up.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Relaxed)
    }

    /// Rows waiting for PostgreSQL.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.len()
    }

    /// What to wait for so that every row pushed until now is committed: `None` while
    /// PostgreSQL is down (then nobody waits).
    pub fn mark(&self) -> Option<u64> {
        self.is_up().then(|| self.shared.backlog.pushed())
    }

    /// Resolves once rows up to `mark` are committed, or after [`ACK_WAIT`] (PostgreSQL went
    /// down meanwhile, or is slow); `true` when they are committed.
    pub async fn written(&self, mark: u64) -> bool {
        let mut committed = self.shared.committed.subscribe();
        let wait = committed.wait_for(|c| *c >= mark);
        matches!(tokio::time::timeout(ACK_WAIT, wait).await, Ok(Ok(_)))
    }

    /// The reader connection, (re)connected when needed.
    async fn reader(&self) -> Result<Arc<Client>, HistoryError> {
        {
            let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = reader.as_ref().filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
        let client = connect(&self.shared.pg).await?;
        // No bitmap scans on this connection: both queries ask for one key range in `ts` order
        // with a LIMIT, which an index scan of each day partition gives in order (partitions
        // are appended by day, no sort). The planner otherwise prefers a bitmap scan plus a sort
        // of every row: at 10,000 rows of one vehicle and day, 11-14 ms in PostgreSQL against
        // 3.6 ms (bench/RESULTS.md, issue 18).
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{QUERY_TIMEOUT}'; SET enable_bitmapscan = off"
            ))
            .await?;
        let client = Arc::new(client);
        *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        Ok(client)
    }

    /// Positions of `vehicle` with `from_ms <= ts <= to_ms`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// PostgreSQL is unreachable or the query failed.
    pub async fn positions(
        &self,
        vehicle: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Value>, HistoryError> {
        let client = self.reader().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(query::positions(&client, vehicle, from_ms, to_ms, limit).await?)
    }

    /// Events by optional vehicle and kind, `from_ms <= ts <= to_ms`, oldest first.
    ///
    /// # Errors
    /// PostgreSQL is unreachable or the query failed.
    pub async fn events(
        &self,
        vehicle: Option<&str>,
        kind: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Value>, HistoryError> {
        let client = self.reader().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(query::events(&client, vehicle, kind, from_ms, to_ms, limit).await?)
    }

    /// Appends the `fleetmq_history_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = &self.shared;
        let _ = write!(
            out,
            "# HELP fleetmq_history_up Whether the history writer is connected to PostgreSQL.\n\
             # TYPE fleetmq_history_up gauge\nfleetmq_history_up {}\n\
             # HELP fleetmq_history_backlog Rows waiting to be written to PostgreSQL.\n\
             # TYPE fleetmq_history_backlog gauge\nfleetmq_history_backlog {}\n\
             # HELP fleetmq_history_dropped_total Rows not written: the backlog was full or PostgreSQL refused them.\n\
             # TYPE fleetmq_history_dropped_total counter\nfleetmq_history_dropped_total {}\n\
             # HELP fleetmq_history_rows_total Rows written to PostgreSQL (replayed duplicates included).\n\
             # TYPE fleetmq_history_rows_total counter\n\
             fleetmq_history_rows_total{{table=\"positions\"}} {}\n\
             fleetmq_history_rows_total{{table=\"events\"}} {}\n\
             # HELP fleetmq_history_batches_total Transactions committed by the history writer.\n\
             # TYPE fleetmq_history_batches_total counter\nfleetmq_history_batches_total {}\n\
             # HELP fleetmq_history_partitions_dropped_total Day partitions dropped past --history-retention.\n\
             # TYPE fleetmq_history_partitions_dropped_total counter\nfleetmq_history_partitions_dropped_total {}\n",
            u8::from(s.up.load(Relaxed)),
            s.backlog.len(),
            s.backlog.dropped.load(Relaxed),
            s.stats.positions.load(Relaxed),
            s.stats.events.load(Relaxed),
            s.stats.batches.load(Relaxed),
            s.stats.partitions_dropped.load(Relaxed),
        );
    }
}

/// Feeds processed states and events into the backlog.
pub struct HistorySink(Arc<Shared>);

impl StateSink for HistorySink {
    fn state(&self, state: &Arc<VehicleState>) {
        self.0.backlog.push(Row::Position(state.clone()));
    }

    fn event(&self, event: &Arc<Event>) {
        self.0.backlog.push(Row::Event(event.clone()));
    }

    /// Restored states are already in history.
    fn restored(&self, _state: &Arc<VehicleState>) {}
}
