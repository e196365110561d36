//! The local SOS log: every `fleet/{id}/sos` is appended to `DATA_DIR/sos.log` and fsynced
//! before anyone is notified (PUBACK, `events/{id}/sos`), with or without Redis. Redis, when
//! configured, gets each record too (`persist::Store::sos`); on start every record of the log is
//! replayed into it, idempotently (a record id already stored is skipped), so an SOS taken while
//! Redis was absent or down reaches `fleetmq:sos` once Redis is there.
//!
//! The file is append-only JSON lines `{"id","vehicle","ts","payload"}` (`payload_hex` instead of
//! `payload` when the driver's bytes are not UTF-8). A line torn by a crash was never fsynced, so
//! never acknowledged: reading skips it. The directory is created at the first SOS, so a broker
//! that never sees one writes nothing. One broker per data directory.
//!
//! Bounded: when the log reaches [`ROTATE_AT`] bytes it becomes `sos.log.1` (replacing the
//! previous one) and a new `sos.log` starts, so the two take at most twice that plus one
//! record; reading takes both, older first. The records dropped with the older generation had
//! been replayed into Redis by then, when Redis is configured.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Name of the log inside `--data-dir`.
pub const FILE_NAME: &str = "sos.log";
/// Name of the previous generation, once the log rotated.
pub const PREVIOUS_NAME: &str = "sos.log.1";
/// Size at which the log rotates.
pub const ROTATE_AT: u64 = 64 * 1024 * 1024;
/// Records replayed into Redis at start at most (the newest); older ones were replayed by the
/// starts before, and the Redis queue holds no more anyway.
pub const REPLAY_MAX: usize = crate::persist::SOS_QUEUE;

/// One logged SOS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedSos {
    /// Unique per SOS (`{ts}-{pid}-{seq}`): Redis stores each id once.
    pub id: String,
    pub vehicle: String,
    /// Broker clock when it arrived, Unix ms.
    pub ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

impl LoggedSos {
    /// A record for Redis alone, when the local log could not take it.
    pub fn unlogged(vehicle: &str, ts: i64, payload: &[u8]) -> LoggedSos {
        record(vehicle, ts, payload)
    }

    /// The driver's bytes as published.
    pub fn bytes(&self) -> Vec<u8> {
        if let Some(text) = &self.payload {
            return text.clone().into_bytes();
        }
        let hex = self.payload_hex.as_deref().unwrap_or("");
        (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    }
}

/// Why an SOS could not be logged.
#[derive(Debug, thiserror::Error)]
#[error("SOS log {path}: {source}")]
pub struct LogError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The append-only log; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SosLog {
    dir: PathBuf,
    /// Opened at the first append, with its size.
    file: Mutex<Option<(File, u64)>>,
    rotate_at: u64,
    /// SOS messages fsynced / that failed to be.
    pub logged: AtomicU64,
    pub errors: AtomicU64,
}

impl SosLog {
    /// A log in `dir` (created at the first append).
    pub fn new(dir: &Path) -> SosLog {
        SosLog {
            dir: dir.to_owned(),
            file: Mutex::new(None),
            rotate_at: ROTATE_AT,
            logged: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The same log rotating at `bytes` (tests).
    #[cfg(test)]
    fn rotating_at(mut self, bytes: u64) -> SosLog {
        self.rotate_at = bytes;
        self
    }

    /// The log file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Appends and fsyncs one SOS on a blocking thread; the record once it is on disk.
    ///
    /// # Errors
    /// The directory or file could not be created, written or synced.
    pub async fn append(
        self: &Arc<Self>,
        vehicle: &str,
        ts: i64,
        payload: &[u8],
    ) -> Result<LoggedSos, LogError> {
        let record = record(vehicle, ts, payload);
        let log = self.clone();
        let written = record.clone();
        let result = tokio::task::spawn_blocking(move || log.write(&written))
            .await
            .unwrap_or_else(|e| Err(self.error(std::io::Error::other(e))));
        match &result {
            Ok(()) => self.logged.fetch_add(1, Relaxed),
            Err(_) => self.errors.fetch_add(1, Relaxed),
        };
        result.map(|()| record)
    }

    fn error(&self, source: std::io::Error) -> LogError {
        LogError {
            path: self.path(),
            source,
        }
    }

    /// One line, then `fsync`; the lock keeps lines whole and in order. A log grown to
    /// `rotate_at` becomes the previous generation after the line is on disk.
    fn write(&self, record: &LoggedSos) -> Result<(), LogError> {
        let mut line = serde_json::to_vec(record).map_err(|e| self.error(e.into()))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            *file = Some(self.open().map_err(|e| self.error(e))?);
        }
        let Some((f, size)) = file.as_mut() else {
            return Err(self.error(std::io::Error::other("log not open")));
        };
        if let Err(e) = f.write_all(&line).and_then(|()| f.sync_data()) {
            // Part of the line may be on disk: the next write opens the log again, which
            // starts it on a line of its own (else it would be glued to this torn one).
            *file = None;
            return Err(self.error(e));
        }
        *size += line.len() as u64;
        if *size >= self.rotate_at {
            // The record is on disk already: a failed rotation is logged, not the SOS's error.
            *file = None;
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "SOS log: rotation failed; appending on");
            }
        }
        Ok(())
    }

    /// `sos.log` becomes `sos.log.1`; the rename is made durable by syncing the directory.
    fn rotate(&self) -> std::io::Result<()> {
        std::fs::rename(self.path(), self.dir.join(PREVIOUS_NAME))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Creates the directory and file; a new file's directory entry is synced too.
    fn open(&self) -> std::io::Result<(File, u64)> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path();
        let existed = path.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if !existed {
            File::open(&self.dir)?.sync_all()?;
        } else if torn_tail(&path)? {
            // Start on a line of our own, after a crash's partial line.
            file.write_all(b"\n")?;
        }
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// The newest [`REPLAY_MAX`] whole records of both generations, oldest first; none when
    /// there is no log yet.
    ///
    /// # Errors
    /// The log exists but cannot be read.
    pub fn read(&self) -> Result<Vec<LoggedSos>, LogError> {
        let mut records = std::collections::VecDeque::new();
        for path in [self.dir.join(PREVIOUS_NAME), self.path()] {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.error(e)),
            };
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|e| self.error(e))?;
                // A torn line (never fsynced, never acknowledged) does not parse: skipped.
                if let Ok(record) = serde_json::from_slice::<LoggedSos>(&line) {
                    if records.len() == REPLAY_MAX {
                        records.pop_front();
                    }
                    records.push_back(record);
                }
            }
        }
        Ok(records.into())
    }

    /// Appends the `fleetmq_sos_log_*` metrics.
    pub fn render_metrics(&self, out: &mut String) {
        crate::metrics::write_metric(
            out,
            "counter",
            "fleetmq_sos_logged_total",
            "SOS messages appended and fsynced to the local SOS log",
            self.logged.load(Relaxed),
        );
        crate::metrics::write_metric(
            out,
            "counter",
            "fleetmq_sos_log_errors_total",
            "SOS messages the local SOS log failed to write",
            self.errors.load(Relaxed),
        );
    }
}

/// Numbers the SOS messages of this process (the id's last part).
static SEQ: AtomicU64 = AtomicU64::new(0);

fn record(vehicle: &str, ts: i64, payload: &[u8]) -> LoggedSos {
    let id = format!("{ts}-{}-{}", std::process::id(), SEQ.fetch_add(1, Relaxed));
    let (payload, payload_hex) = match std::str::from_utf8(payload) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(payload.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    };
    LoggedSos {
        id,
        vehicle: vehicle.to_owned(),
        ts,
        payload,
        payload_hex,
    }
}

/// Whether the file at `path` ends inside a line.
fn torn_tail(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_survive_reopen_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("fleetmq-soslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(SosLog::new(&dir));
        assert!(log.read().unwrap().is_empty());
        let a = log.append("bus-1", 1, b"help").await.unwrap();
        let b = log.append("bus-2", 2, &[0xff, 0x00]).await.unwrap();
        assert_ne!(a.id, b.id);
        // A crash mid-write leaves a partial line behind.
        let mut f = OpenOptions::new().append(true).open(log.path()).unwrap();
        f.write_all(b"{\"id\":\"torn").unwrap();
        let reopened = Arc::new(SosLog::new(&dir));
        assert_eq!(reopened.read().unwrap(), vec![a.clone(), b.clone()]);
        // The next append starts on its own line.
        let c = reopened.append("bus-3", 3, b"again").await.unwrap();
        let again = reopened.read().unwrap();
        assert_eq!(again, vec![a, b, c]);
        assert_eq!(again[1].bytes(), vec![0xff, 0x00]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A failed write (disk full) may leave part of a line behind; the next SOS must not be
    /// appended to it (it would be unreadable, though acknowledged): the log is opened again.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn after_a_failed_write_the_next_sos_goes_on_a_line_of_its_own() {
        let dir = std::env::temp_dir().join(format!("fleetmq-soslog-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = Arc::new(SosLog::new(&dir));
        // A full disk: every write fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", log.path()).unwrap();
        assert!(log.append("bus-1", 1, b"lost").await.is_err());
        // Space again, and the failed write's partial line on disk.
        std::fs::remove_file(log.path()).unwrap();
        std::fs::write(log.path(), b"{\"id\":\"torn").unwrap();
        let b = log.append("bus-2", 2, b"kept").await.unwrap();
        assert_eq!(log.read().unwrap(), vec![b]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_log_rotates_and_keeps_one_previous_generation() {
        let dir = std::env::temp_dir().join(format!("fleetmq-soslog-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Arc::new(SosLog::new(&dir).rotating_at(1000));
        let mut written = Vec::new();
        for i in 0..40 {
            written.push(log.append("bus-1", i, &[b'x'; 100]).await.unwrap());
        }
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        // Each generation ends at the first record past 1000 bytes.
        assert!(size(FILE_NAME) < 1000 + 200, "{}", size(FILE_NAME));
        assert!((1000..1000 + 200).contains(&size(PREVIOUS_NAME)));
        // What is read: the newest records, in order, across both files.
        let read = log.read().unwrap();
        assert!(read.len() >= 5 && read.len() < 40, "{}", read.len());
        assert_eq!(read[..], written[written.len() - read.len()..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
