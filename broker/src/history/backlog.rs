//! The bounded queue between ingest and the writer. Ingest only pushes (a short lock, never a
//! wait); a full backlog drops the new row and counts it. Rows are numbered in queue order so
//! that a publisher can wait until "everything up to my rows" is committed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::Notify;

use super::row::Row;

pub(crate) struct Backlog {
    inner: Mutex<Inner>,
    /// Wakes the writer after a push.
    pub(crate) notify: Notify,
    /// Rows held at most (the writer's batch in hand comes on top).
    cap: usize,
    /// Rows refused because the backlog was full (`fleetmq_history_dropped_total`).
    pub(crate) dropped: AtomicU64,
}

struct Inner {
    rows: VecDeque<Row>,
    /// Rows ever accepted; the n-th accepted row is the n-th the writer takes.
    pushed: u64,
}

impl Backlog {
    pub(crate) fn new(cap: usize) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner {
                rows: VecDeque::new(),
                pushed: 0,
            }),
            notify: Notify::new(),
            cap,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a row, or drops and counts it when the backlog is full.
    pub(crate) fn push(&self, row: Row) {
        let mut inner = self.lock();
        if inner.rows.len() >= self.cap {
            drop(inner);
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        inner.rows.push_back(row);
        inner.pushed += 1;
        drop(inner);
        self.notify.notify_one();
    }

    /// Rows accepted so far: once the writer has committed this many, every row pushed before
    /// this call is in PostgreSQL.
    pub(crate) fn pushed(&self) -> u64 {
        self.lock().pushed
    }

    /// Moves up to `max` of the oldest rows into `out`; returns how many.
    pub(crate) fn take(&self, max: usize, out: &mut Vec<Row>) -> usize {
        let mut inner = self.lock();
        let n = inner.rows.len().min(max);
        out.extend(inner.rows.drain(..n));
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().rows.len()
    }
}
