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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Name of the log inside `--data-dir`.
pub const FILE_NAME: &str = "sos.log";
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
    /// Opened at the first append.
    file: Mutex<Option<File>>,
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
            logged: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
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

    /// One line, then `fsync`; the lock keeps lines whole and in order.
    fn write(&self, record: &LoggedSos) -> Result<(), LogError> {
        let mut line = serde_json::to_vec(record).map_err(|e| self.error(e.into()))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            *file = Some(self.open().map_err(|e| self.error(e))?);
        }
        let f = file.as_mut().expect("opened above");
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .map_err(|e| self.error(e))
    }

    /// Creates the directory and file; a new file's directory entry is synced too.
    fn open(&self) -> std::io::Result<File> {
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
        Ok(file)
    }

    /// The newest [`REPLAY_MAX`] whole records, oldest first; none when there is no log yet.
    ///
    /// # Errors
    /// The log exists but cannot be read.
    pub fn read(&self) -> Result<Vec<LoggedSos>, LogError> {
        let file = match File::open(self.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let mut records = std::collections::VecDeque::new();
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|e| self.error(e))?;
            // A torn last line (never fsynced, never acknowledged) does not parse: skipped.
            if let Ok(record) = serde_json::from_slice::<LoggedSos>(&line) {
                if records.len() == REPLAY_MAX {
                    records.pop_front();
                }
                records.push_back(record);
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
}
