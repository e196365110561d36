//! The write-behind task: takes what the backlog holds (at most [`BATCH_MAX`] rows) as soon as
//! there is anything, COPYs it in binary into the staging tables and moves it into the real
//! tables with `ON CONFLICT DO NOTHING`, all in one transaction. While PostgreSQL is down it
//! keeps its batch, reconnects with backoff, and the backlog fills up to its bound.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use super::row::{
    EVENT_COPY, EVENT_TYPES, EventColumns, POSITION_COPY, POSITION_TYPES, PositionColumns, Row,
};
use super::{Shared, schema};
use crate::ingest::now_ms;

/// Rows in one transaction at most: large enough that COPY's per-statement cost vanishes,
/// small enough that a batch commits well within a second.
pub const BATCH_MAX: usize = 20_000;
/// Partitions are created this many days ahead (and one behind: fixes may be 24 h old).
const DAYS_AHEAD: i64 = 2;
/// How often partitions ahead are created and expired ones dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(3600);
/// A batch (or connecting and migrating) that takes longer is abandoned and retried on a new
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(super) async fn run(shared: Arc<Shared>) {
    let mut batch: Vec<Row> = Vec::new();
    // Rows taken off the backlog so far; committed (or given up) once `batch` is empty.
    let mut taken: u64 = 0;
    let mut backoff = MIN_BACKOFF;
    'connect: loop {
        let mut days = HashSet::new();
        let connected = match tokio::time::timeout(WRITE_TIMEOUT, connect(&shared, &mut days)).await
        {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "history: connect failed");
                None
            }
            Err(_) => {
                tracing::debug!("history: connect timed out");
                None
            }
        };
        let Some(mut client) = connected else {
            shared.mark_up(false);
            if shared.stop.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shared.stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        backoff = MIN_BACKOFF;
        shared.mark_up(true);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.reset(); // `connect` just did it
        loop {
            if batch.is_empty() {
                taken += shared.backlog.take(BATCH_MAX, &mut batch) as u64;
            }
            if batch.is_empty() {
                if shared.stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = shared.backlog.notify.notified() => {}
                    _ = housekeeping.tick() => {
                        if let Err(e) = housekeep(&client, &shared, &mut days).await {
                            tracing::warn!(error = %e, "history: partition housekeeping failed");
                            if client.is_closed() {
                                shared.mark_up(false);
                                continue 'connect;
                            }
                        }
                    }
                    _ = shared.stop.cancelled() => {}
                }
                continue;
            }
            let written =
                tokio::time::timeout(WRITE_TIMEOUT, write(&mut client, &batch, &mut days)).await;
            let Ok(written) = written else {
                // A connection that stopped answering (a half-open socket) is as good as lost.
                shared.mark_up(false);
                tracing::warn!(rows = batch.len(), "history: batch timed out, reconnecting");
                continue 'connect;
            };
            match written {
                Ok((positions, events)) => {
                    shared.stats.positions.fetch_add(positions, Relaxed);
                    shared.stats.events.fetch_add(events, Relaxed);
                    shared.stats.batches.fetch_add(1, Relaxed);
                }
                Err(e) if client.is_closed() || transient(&e) => {
                    shared.mark_up(false);
                    tracing::debug!(error = %e, rows = batch.len(), "history: connection lost, keeping the batch");
                    continue 'connect;
                }
                Err(e) => {
                    // The database refused the data itself: retrying would refuse it again
                    // and stop everything behind it.
                    tracing::error!(error = %e, rows = batch.len(), "history: batch refused, dropping it");
                    shared
                        .backlog
                        .dropped
                        .fetch_add(batch.len() as u64, Relaxed);
                }
            }
            batch.clear();
            shared.committed.send_replace(taken);
        }
    }
}

/// Whether an error is about the server or the connection rather than the rows: then the batch
/// is kept and written after a reconnect. SQLSTATE classes 08 (connection), 40 (rolled back:
/// serialization, deadlock), 53 (insufficient resources), 57 (operator intervention: shutdown,
/// cancel) and 58 (system error), and errors with no SQLSTATE (I/O).
fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58"),
    }
}

/// Connects, migrates, and does the housekeeping once.
async fn connect(
    shared: &Shared,
    days: &mut HashSet<i64>,
) -> Result<Client, tokio_postgres::Error> {
    let client = super::connect(&shared.pg).await?;
    schema::migrate(&client).await?;
    housekeep(&client, shared, days).await?;
    Ok(client)
}

/// Partitions from yesterday to [`DAYS_AHEAD`] days ahead; drops the expired ones.
async fn housekeep(
    client: &Client,
    shared: &Shared,
    days: &mut HashSet<i64>,
) -> Result<(), tokio_postgres::Error> {
    let now = now_ms();
    let today = schema::day_of(now);
    for day in today - 1..=today + DAYS_AHEAD {
        if days.insert(day)
            && let Err(e) = schema::ensure_day(client, day).await
        {
            days.remove(&day);
            return Err(e);
        }
    }
    for day in schema::drop_expired(client, shared.retention, now).await? {
        days.remove(&day);
        shared.stats.partitions_dropped.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// One transaction: missing partitions, then COPY → staging → `INSERT ... ON CONFLICT DO
/// NOTHING` for each table. Returns the rows offered per table (duplicates included).
async fn write(
    client: &mut Client,
    batch: &[Row],
    days: &mut HashSet<i64>,
) -> Result<(u64, u64), tokio_postgres::Error> {
    for row in batch {
        let day = schema::day_of(row.ts());
        if !days.contains(&day) {
            schema::ensure_day(client, day).await?;
            days.insert(day);
        }
    }
    let tx = client.transaction().await?;
    let (mut positions, mut events) = (0u64, 0u64);
    if batch.iter().any(|r| matches!(r, Row::Position(_))) {
        let sink = tx.copy_in(POSITION_COPY).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &POSITION_TYPES));
        for row in batch {
            if let Row::Position(s) = row {
                writer
                    .as_mut()
                    .write(&PositionColumns::new(s).values())
                    .await?;
                positions += 1;
            }
        }
        writer.finish().await?;
        // Sorted by vehicle: a batch's rows of one vehicle land on neighbouring heap pages, so
        // a vehicle's day is read from ~rows/batch-share pages instead of one page per fix
        // (rows arrive in time order, all vehicles interleaved). It also walks the primary-key
        // index in order.
        tx.execute(
            "INSERT INTO fleetmq_positions SELECT * FROM fleetmq_positions_stage \
             ORDER BY vehicle, ts ON CONFLICT DO NOTHING",
            &[],
        )
        .await?;
    }
    if batch.iter().any(|r| matches!(r, Row::Event(_))) {
        let sink = tx.copy_in(EVENT_COPY).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &EVENT_TYPES));
        for row in batch {
            if let Row::Event(e) = row {
                writer
                    .as_mut()
                    .write(&EventColumns::new(e).values())
                    .await?;
                events += 1;
            }
        }
        writer.finish().await?;
        tx.execute(
            "INSERT INTO fleetmq_events SELECT * FROM fleetmq_events_stage \
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((positions, events))
}
