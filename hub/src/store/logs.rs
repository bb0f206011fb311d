//! Workload output lines: `DIR/logs.db`, a SQLite file of its own.
//!
//! Logs are the one unbounded input of the hub (every workload of every node may print), so
//! they are kept apart from the fleet state: their own file and writer ([`LogStore`]), their
//! own reader connection ([`LogReader`]), and retention by **bytes and age** rather than by a
//! row count that says nothing about size. Trimmed pages go back to the filesystem through
//! `auto_vacuum = INCREMENTAL`, so the file shrinks after a flood instead of staying at its
//! high-water mark.

use std::path::Path;
use std::sync::Mutex;

use super::sqlite::{RW, connect, db, incremental_vacuum, memory_uri, open_file};
use super::{LogRecord, StoreError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// How much log the hub keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Bytes of stored lines (text plus a fixed per-row overhead), across all deployments.
    pub max_bytes: u64,
    /// Lines older than this (by the hub's clock when they arrived) are dropped.
    pub max_age_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: 64 << 20,
            max_age_ms: 24 * 3600 * 1000,
        }
    }
}

/// What one row costs beyond its text, for the byte budget (ids, times, index entries).
const ROW_OVERHEAD: u64 = 64;

/// Bytes a record counts for.
fn cost(workload: &str, node: &str, line: &str) -> u64 {
    (workload.len() + node.len() + line.len()) as u64 + ROW_OVERHEAD
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, at_ms INTEGER NOT NULL, deployment TEXT NOT NULL, workload TEXT NOT NULL, node TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_deployment ON logs (deployment, id);
CREATE INDEX IF NOT EXISTS logs_at ON logs (at_ms);
";

/// The writer of the log store (one per hub: the log ingest task).
#[derive(Debug)]
pub struct LogStore {
    conn: Connection,
    uri: String,
    retention: Retention,
    /// Bytes stored now (by [`cost`]).
    bytes: u64,
}

impl LogStore {
    /// Opens (creating if needed) the log store at `path`.
    pub fn open(path: &Path, retention: Retention) -> Result<LogStore, StoreError> {
        // Losing the last lines in a power cut is acceptable; an fsync per batch is not.
        let (conn, uri) = open_file(path, "OFF")?;
        Self::init(conn, uri, retention)
    }

    /// An in-memory log store, for tests.
    pub fn in_memory(retention: Retention) -> Result<LogStore, StoreError> {
        let uri = memory_uri("logs");
        Self::init(connect(&uri, RW)?, uri, retention)
    }

    fn init(conn: Connection, uri: String, retention: Retention) -> Result<LogStore, StoreError> {
        conn.execute_batch(SCHEMA)
            .map_err(db("creating the log schema"))?;
        let bytes: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(length(CAST(workload AS BLOB)) + length(CAST(node AS BLOB)) + length(CAST(line AS BLOB)) + ?1), 0) FROM logs",
                params![ROW_OVERHEAD as i64],
                |r| r.get(0),
            )
            .map_err(db("measuring the log store"))?;
        Ok(LogStore {
            conn,
            uri,
            retention,
            bytes: bytes.max(0) as u64,
        })
    }

    /// A read-only connection to the same store, for the API.
    pub fn reader(&self) -> Result<LogReader, StoreError> {
        Ok(LogReader {
            conn: Mutex::new(connect(&self.uri, OpenFlags::SQLITE_OPEN_READ_ONLY)?),
        })
    }

    /// Bytes stored now (text plus per-row overhead).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends lines (their ids are assigned here) that arrived at `now_ms`, in one
    /// transaction, then trims if the store is over its byte budget.
    pub fn append(&mut self, lines: &[LogRecord], now_ms: u64) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction()
            .map_err(db("starting a log transaction"))?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (ts_ms, at_ms, deployment, workload, node, stream, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db("writing logs"))?;
            for l in lines {
                stmt.execute(params![
                    l.ts_ms as i64,
                    now_ms as i64,
                    l.deployment,
                    l.workload,
                    l.node,
                    l.stream,
                    l.line
                ])
                .map_err(db("writing logs"))?;
                added += cost(&l.workload, &l.node, &l.line);
            }
        }
        tx.commit().map_err(db("committing logs"))?;
        self.bytes += added;
        // Trim in steps of an eighth of the budget, not after every batch.
        if self.bytes
            > self
                .retention
                .max_bytes
                .saturating_add(self.retention.max_bytes / 8)
        {
            self.trim(now_ms)?;
        }
        Ok(())
    }

    /// Drops lines older than the retention age, then the oldest lines until the store is
    /// within its byte budget, and gives the freed pages back to the filesystem.
    pub fn trim(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let cutoff = now_ms.saturating_sub(self.retention.max_age_ms) as i64;
        let old: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(id) FROM logs WHERE at_ms < ?1",
                params![cutoff],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("finding old log lines"))?
            .flatten();
        let mut deleted = 0;
        if let Some(id) = old {
            deleted += self.delete_through(id)?;
        }
        while self.bytes > self.retention.max_bytes {
            // The oldest rows, a thousand at a time, until enough bytes are covered.
            let excess = self.bytes - self.retention.max_bytes;
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT id, length(CAST(workload AS BLOB)) + length(CAST(node AS BLOB)) + length(CAST(line AS BLOB)) FROM logs ORDER BY id LIMIT 1000",
                )
                .map_err(db("trimming logs"))?;
            let rows: Vec<(i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db("trimming logs"))?
                .collect::<Result<_, _>>()
                .map_err(db("trimming logs"))?;
            drop(stmt);
            let Some(&(last, _)) = rows.last() else {
                self.bytes = 0;
                break;
            };
            let mut covered = 0u64;
            let mut through = last;
            for (id, len) in rows {
                covered += len.max(0) as u64 + ROW_OVERHEAD;
                if covered >= excess {
                    through = id;
                    break;
                }
            }
            deleted += self.delete_through(through)?;
        }
        if deleted > 0 {
            incremental_vacuum(&self.conn)?;
        }
        Ok(())
    }

    /// Deletes every line with id ≤ `id`, keeping the byte count exact.
    fn delete_through(&mut self, id: i64) -> Result<usize, StoreError> {
        let freed: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(length(CAST(workload AS BLOB)) + length(CAST(node AS BLOB)) + length(CAST(line AS BLOB)) + ?2), 0) FROM logs WHERE id <= ?1",
                params![id, ROW_OVERHEAD as i64],
                |r| r.get(0),
            )
            .map_err(db("trimming logs"))?;
        let n = self
            .conn
            .execute("DELETE FROM logs WHERE id <= ?1", params![id])
            .map_err(db("trimming logs"))?;
        self.bytes = self.bytes.saturating_sub(freed.max(0) as u64);
        Ok(n)
    }
}

/// Read-only access to logs, for the API.
#[derive(Debug)]
pub struct LogReader {
    conn: Mutex<Connection>,
}

impl LogReader {
    /// Lines of `deployment` with id greater than `after`, oldest first; `after = None` means
    /// the most recent `limit` lines.
    pub fn logs(
        &self,
        deployment: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let map = |r: &rusqlite::Row<'_>| {
            Ok(LogRecord {
                id: r.get::<_, i64>(0)? as u64,
                ts_ms: r.get::<_, i64>(1)? as u64,
                deployment: r.get(2)?,
                workload: r.get(3)?,
                node: r.get(4)?,
                stream: r.get(5)?,
                line: r.get(6)?,
            })
        };
        const COLS: &str = "SELECT id, ts_ms, deployment, workload, node, stream, line FROM logs";
        let read = db("reading logs");
        let out = match after {
            Some(after) => {
                let sql =
                    format!("{COLS} WHERE deployment = ?1 AND id > ?2 ORDER BY id ASC LIMIT ?3");
                let mut stmt = conn.prepare_cached(&sql).map_err(db("reading logs"))?;
                stmt.query_map(params![deployment, after as i64, limit], map)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(read)?
            }
            None => {
                let sql = format!("{COLS} WHERE deployment = ?1 ORDER BY id DESC LIMIT ?2");
                let mut stmt = conn.prepare_cached(&sql).map_err(db("reading logs"))?;
                let mut v = stmt
                    .query_map(params![deployment, limit], map)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(read)?;
                v.reverse();
                v
            }
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u64, dep: &str, text: &str) -> LogRecord {
        LogRecord {
            id: 0,
            ts_ms: i,
            deployment: dep.into(),
            workload: format!("{dep}-0"),
            node: "a".into(),
            stream: "stdout".into(),
            line: text.into(),
        }
    }

    #[test]
    fn logs_page_by_cursor_and_tail() {
        let mut s = LogStore::in_memory(Retention::default()).unwrap();
        let r = s.reader().unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| line(i, if i % 2 == 0 { "x" } else { "y" }, &format!("line {i}")))
            .collect();
        s.append(&batch, 1).unwrap();
        let tail = r.logs("x", None, 2).unwrap();
        assert_eq!(
            tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["line 6", "line 8"]
        );
        let after = r.logs("x", Some(tail[0].id), 100).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].line, "line 8");
    }

    #[test]
    fn retention_is_by_bytes_and_keeps_the_newest() {
        let retention = Retention {
            max_bytes: 100_000,
            max_age_ms: u64::MAX,
        };
        let mut s = LogStore::in_memory(retention).unwrap();
        let r = s.reader().unwrap();
        let long = "x".repeat(4000);
        for i in 0..200u64 {
            s.append(&[line(i, "flood", &format!("{i} {long}"))], 1)
                .unwrap();
            assert!(
                s.bytes() <= retention.max_bytes * 9 / 8 + 5000,
                "{}",
                s.bytes()
            );
        }
        s.trim(1).unwrap();
        assert!(s.bytes() <= retention.max_bytes, "{}", s.bytes());
        assert!(
            s.bytes() > retention.max_bytes - 5000,
            "trimmed just enough: {}",
            s.bytes()
        );
        let kept = r.logs("flood", None, 1000).unwrap();
        assert!((20..=25).contains(&kept.len()), "{}", kept.len());
        assert!(
            kept.last().unwrap().line.starts_with("199 "),
            "the newest stay"
        );
        // Many short lines of another deployment count by their size, not their number.
        let short: Vec<_> = (0..2000).map(|i| line(i, "calm", "ok")).collect();
        s.append(&short, 2).unwrap();
        s.trim(2).unwrap();
        assert!(s.bytes() <= retention.max_bytes);
    }

    #[test]
    fn retention_is_by_age_too() {
        let retention = Retention {
            max_bytes: u64::MAX,
            max_age_ms: 1000,
        };
        let mut s = LogStore::in_memory(retention).unwrap();
        let r = s.reader().unwrap();
        s.append(&[line(1, "d", "old")], 10_000).unwrap();
        s.append(&[line(2, "d", "new")], 10_900).unwrap();
        s.trim(11_500).unwrap();
        let kept: Vec<_> = r
            .logs("d", None, 10)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(kept, ["new"]);
    }

    #[test]
    fn the_file_shrinks_after_trimming() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.db");
        let mut s = LogStore::open(
            &path,
            Retention {
                max_bytes: 1 << 30,
                max_age_ms: u64::MAX,
            },
        )
        .unwrap();
        let big = "y".repeat(8000);
        let lines: Vec<_> = (0..2000).map(|i| line(i, "d", &big)).collect();
        s.append(&lines, 1).unwrap();
        s.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > 10 << 20, "{full}");
        s.retention.max_bytes = 100_000;
        s.trim(1).unwrap();
        s.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < full / 10, "{full} -> {after}");
        // Reopening measures what is there.
        let bytes = s.bytes();
        drop(s);
        let again = LogStore::open(&path, Retention::default()).unwrap();
        assert_eq!(again.bytes(), bytes);
    }
}
