//! The default store: one SQLite file in the hub's data directory (WAL mode).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use wasmfleet_proto::{DesiredState, Hello};

use super::{Batch, Event, LogRecord, Snapshot, Store, StoreError};
use crate::model::{DeploymentRecord, NodeRecord};

/// Events kept; older ones are trimmed.
const KEEP_EVENTS: u64 = 10_000;
/// Log lines kept across all deployments; older ones are trimmed.
const KEEP_LOG_LINES: u64 = 200_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deployments (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, hello TEXT NOT NULL, ready INTEGER NOT NULL, since_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS desired (node TEXT PRIMARY KEY, frame BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, object TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_object ON events (kind, object, id);
CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, deployment TEXT NOT NULL, workload TEXT NOT NULL, node TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_deployment ON logs (deployment, id);
";

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Db { context, source }
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db(format!("opening {}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db("setting synchronous"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db("creating the schema"))?;
        Ok(SqliteStore { conn })
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db("opening in-memory db"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db("creating the schema"))?;
        Ok(SqliteStore { conn })
    }
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let mut stmt = self
            .conn
            .prepare("SELECT name, record FROM deployments")
            .map_err(db("reading deployments"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db("reading deployments"))?;
        for row in rows {
            let (name, json) = row.map_err(db("reading deployments"))?;
            let rec: DeploymentRecord = serde_json::from_str(&json)
                .map_err(|e| corrupt(format!("deployment {name}"), e))?;
            snap.deployments.insert(name, rec);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, hello, ready, since_ms FROM nodes")
            .map_err(db("reading nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(db("reading nodes"))?;
        for row in rows {
            let (name, hello, ready, since) = row.map_err(db("reading nodes"))?;
            let hello: Hello =
                serde_json::from_str(&hello).map_err(|e| corrupt(format!("node {name}"), e))?;
            let since_ms = u64::try_from(since).unwrap_or_default();
            snap.nodes.insert(
                name.clone(),
                NodeRecord {
                    name,
                    hello,
                    ready,
                    since_ms,
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare("SELECT node, frame FROM desired")
            .map_err(db("reading desired states"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db("reading desired states"))?;
        for row in rows {
            let (node, frame) = row.map_err(db("reading desired states"))?;
            let state = wasmfleet_proto::decode::<DesiredState>(&frame)
                .map_err(|e| corrupt(format!("desired state of node {node}"), e))?;
            snap.desired.insert(node, state);
        }
        Ok(snap)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction()
            .map_err(db("starting a transaction"))?;
        for rec in &batch.put_deployments {
            let json = serde_json::to_string(rec)
                .map_err(|e| corrupt(format!("deployment {}", rec.name), e))?;
            tx.execute(
                "INSERT OR REPLACE INTO deployments (name, record) VALUES (?1, ?2)",
                params![rec.name, json],
            )
            .map_err(db(format!("writing deployment {}", rec.name)))?;
        }
        for name in &batch.delete_deployments {
            tx.execute("DELETE FROM deployments WHERE name = ?1", params![name])
                .map_err(db(format!("deleting deployment {name}")))?;
        }
        for node in &batch.put_nodes {
            let hello = serde_json::to_string(&node.hello)
                .map_err(|e| corrupt(format!("node {}", node.name), e))?;
            tx.execute(
                "INSERT OR REPLACE INTO nodes (name, hello, ready, since_ms) VALUES (?1, ?2, ?3, ?4)",
                params![node.name, hello, node.ready, node.since_ms as i64],
            )
            .map_err(db(format!("writing node {}", node.name)))?;
        }
        for (node, state) in &batch.put_desired {
            tx.execute(
                "INSERT OR REPLACE INTO desired (node, frame) VALUES (?1, ?2)",
                params![node, wasmfleet_proto::encode(state)],
            )
            .map_err(db(format!("writing the desired state of node {node}")))?;
        }
        for ev in &batch.events {
            tx.execute(
                "INSERT INTO events (ts_ms, kind, object, reason, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ev.ts_ms as i64, ev.kind, ev.object, ev.reason, ev.message],
            )
            .map_err(db("writing an event"))?;
        }
        tx.commit().map_err(db("committing"))
    }

    fn events(&self, object: Option<(&str, &str)>, limit: u32) -> Result<Vec<Event>, StoreError> {
        let (kind, name) = object.unwrap_or(("", ""));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, ts_ms, kind, object, reason, message FROM events
                 WHERE (?1 = '' OR (kind = ?1 AND object = ?2)) ORDER BY id DESC LIMIT ?3",
            )
            .map_err(db("reading events"))?;
        let rows = stmt
            .query_map(params![kind, name, limit], |r| {
                Ok(Event {
                    id: r.get::<_, i64>(0)? as u64,
                    ts_ms: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    object: r.get(3)?,
                    reason: r.get(4)?,
                    message: r.get(5)?,
                })
            })
            .map_err(db("reading events"))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(db("reading events"))?;
        out.reverse();
        Ok(out)
    }

    fn append_logs(&mut self, lines: &[LogRecord]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("starting a transaction"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (ts_ms, deployment, workload, node, stream, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db("writing logs"))?;
            for l in lines {
                stmt.execute(params![
                    l.ts_ms as i64,
                    l.deployment,
                    l.workload,
                    l.node,
                    l.stream,
                    l.line
                ])
                .map_err(db("writing logs"))?;
            }
        }
        tx.commit().map_err(db("committing logs"))
    }

    fn logs(
        &self,
        deployment: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError> {
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
        let mut out = match after {
            Some(after) => {
                let sql =
                    format!("{COLS} WHERE deployment = ?1 AND id > ?2 ORDER BY id ASC LIMIT ?3");
                let mut stmt = self.conn.prepare_cached(&sql).map_err(db("reading logs"))?;
                let rows = stmt
                    .query_map(params![deployment, after as i64, limit], map)
                    .map_err(db("reading logs"))?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(db("reading logs"))?
            }
            None => {
                let sql = format!("{COLS} WHERE deployment = ?1 ORDER BY id DESC LIMIT ?2");
                let mut stmt = self.conn.prepare_cached(&sql).map_err(db("reading logs"))?;
                let rows = stmt
                    .query_map(params![deployment, limit], map)
                    .map_err(db("reading logs"))?;
                let mut v = rows
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db("reading logs"))?;
                v.reverse();
                v
            }
        };
        out.shrink_to_fit();
        Ok(out)
    }

    fn trim(&mut self) -> Result<(), StoreError> {
        for (table, keep) in [("events", KEEP_EVENTS), ("logs", KEEP_LOG_LINES)] {
            let max: Option<i64> = self
                .conn
                .query_row(&format!("SELECT MAX(id) FROM {table}"), [], |r| r.get(0))
                .optional()
                .map_err(db(format!("trimming {table}")))?
                .flatten();
            if let Some(max) = max {
                self.conn
                    .execute(
                        &format!("DELETE FROM {table} WHERE id <= ?1"),
                        params![max - keep as i64],
                    )
                    .map_err(db(format!("trimming {table}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::{deployment, node};

    fn event(object: &str, reason: &str) -> Event {
        Event {
            id: 0,
            ts_ms: 5,
            kind: "Deployment".into(),
            object: object.into(),
            reason: reason.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let desired = DesiredState {
            generation: 7,
            workloads: vec![deployment("hello", 1).workload_spec(0).unwrap()],
        };
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.commit(&Batch {
                put_deployments: vec![deployment("hello", 2), deployment("gone", 1)],
                put_nodes: vec![node("a", true, 1 << 30, 4)],
                put_desired: vec![("a".into(), desired.clone())],
                events: vec![event("hello", "Created")],
                ..Batch::default()
            })
            .unwrap();
            s.commit(&Batch {
                delete_deployments: vec!["gone".into()],
                ..Batch::default()
            })
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.deployments.keys().collect::<Vec<_>>(), ["hello"]);
        assert_eq!(snap.deployments["hello"], deployment("hello", 2));
        assert_eq!(snap.nodes["a"], node("a", true, 1 << 30, 4));
        assert_eq!(snap.desired["a"], desired);
        assert_eq!(
            s.events(Some(("Deployment", "hello")), 10).unwrap()[0].reason,
            "Created"
        );
        assert!(
            s.events(Some(("Deployment", "other")), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn logs_page_by_cursor_and_tail() {
        let mut s = SqliteStore::in_memory().unwrap();
        let line = |i: u64, dep: &str| LogRecord {
            id: 0,
            ts_ms: i,
            deployment: dep.into(),
            workload: format!("{dep}-0"),
            node: "a".into(),
            stream: "stdout".into(),
            line: format!("line {i}"),
        };
        let batch: Vec<_> = (0..10)
            .map(|i| line(i, if i % 2 == 0 { "x" } else { "y" }))
            .collect();
        s.append_logs(&batch).unwrap();
        let tail = s.logs("x", None, 2).unwrap();
        assert_eq!(
            tail.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["line 6", "line 8"]
        );
        let after = s.logs("x", Some(tail[0].id), 100).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].line, "line 8");
    }

    #[test]
    fn corrupt_rows_are_reported_with_their_name() {
        let s = SqliteStore::in_memory().unwrap();
        s.conn
            .execute(
                "INSERT INTO desired (node, frame) VALUES ('n1', x'0203')",
                [],
            )
            .unwrap();
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains("desired state of node n1"), "{err}");
    }
}
