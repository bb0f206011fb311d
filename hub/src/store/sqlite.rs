//! The default store: one SQLite file in the hub's data directory (WAL mode), written by the
//! controller through [`SqliteStore`] and read by the API through [`EventReader`] (a second
//! connection: WAL readers never wait for the writer).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use wasmfleet_proto::{DesiredState, Hello};

use super::{Batch, Event, Snapshot, Store, StoreError};
use crate::model::{ArtifactState, DeploymentRecord, NodeRecord, Scheduling};

/// Events kept; older ones are trimmed.
const KEEP_EVENTS: u64 = 10_000;

/// The first schema (the foundation's); migrations below bring it to the current one.
const SCHEMA_V0: &str = "
CREATE TABLE IF NOT EXISTS deployments (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, hello TEXT NOT NULL, ready INTEGER NOT NULL, since_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS desired (node TEXT PRIMARY KEY, frame BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, object TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_object ON events (kind, object, id);
";

/// Migrations by `user_version`: entry `i` takes version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: fleet identity; events indexed by deployment; logs move to their own store.
    "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ALTER TABLE events ADD COLUMN deployment TEXT;
    CREATE INDEX IF NOT EXISTS events_deployment ON events (deployment, id);
    DROP TABLE IF EXISTS logs;
    ",
    // 2: precompiled artifacts per module and engine profile.
    "
    CREATE TABLE IF NOT EXISTS artifacts (module TEXT NOT NULL, profile TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (module, profile));
    ",
    // 3: cordoned and drained nodes.
    "
    ALTER TABLE nodes ADD COLUMN scheduling TEXT NOT NULL DEFAULT 'Enabled';
    ALTER TABLE nodes ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
    ",
];

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// How a second connection reaches the same database.
    uri: String,
}

pub(super) fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Db { context, source }
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Opens `uri` with the settings every connection of the hub uses.
pub(super) fn connect(uri: &str, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        .map_err(db(format!("opening {uri}")))?;
    // Another connection (API reads, the log writer) may hold the lock for a moment.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db("setting the busy timeout"))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(db("setting the cache size"))?;
    Ok(conn)
}

/// Page cache of each connection, KiB (SQLite's default is 2,000). The hub writes batches and
/// reads at start: its pages stay in the kernel's page cache anyway, and each of its
/// connections kept 2 MB of the hub's resident memory.
const CACHE_KIB: i64 = 512;

/// Gives free pages back to the filesystem (`auto_vacuum = INCREMENTAL`). The pragma frees
/// one page per step of its statement, so it is stepped to the end rather than executed once.
pub(super) fn incremental_vacuum(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA incremental_vacuum")
        .map_err(db("vacuuming"))?;
    let mut rows = stmt.raw_query();
    while rows.next().map_err(db("vacuuming"))?.is_some() {}
    Ok(())
}

/// A `file:` URI for `path` (SQLite URIs need `?`, `#` and `%` escaped).
pub(super) fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri
}

/// A unique shared-cache in-memory database (for tests): every connection to it sees the
/// same data while one stays open.
pub(super) fn memory_uri(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "file:wasmfleet-{what}-{}-{}?mode=memory&cache=shared",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(super) const RW: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_WRITE.union(OpenFlags::SQLITE_OPEN_CREATE);

/// Opens (creating if needed) a database file the way the hub keeps them: WAL, so readers
/// never wait for the writer; `auto_vacuum = INCREMENTAL`, set before the first table exists,
/// so trimmed rows give their pages back; and the given `synchronous` level. Returns the
/// connection and the URI further connections use.
pub(super) fn open_file(
    path: &Path,
    synchronous: &str,
) -> Result<(Connection, String), StoreError> {
    let uri = file_uri(path);
    let conn = connect(&uri, RW)?;
    let at = |what: &str| db(format!("{what} on {}", path.display()));
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(at("enabling auto_vacuum"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(at("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(at("setting synchronous"))?;
    Ok((conn, uri))
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let (conn, uri) = open_file(path, "NORMAL")?;
        Self::init(conn, uri)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let uri = memory_uri("hub");
        Self::init(connect(&uri, RW)?, uri)
    }

    fn init(mut conn: Connection, uri: String) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA_V0)
            .map_err(db("creating the schema"))?;
        migrate(&mut conn)?;
        let fleet: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'fleet'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db("reading the fleet identity"))?;
        if fleet.is_none() {
            let id = rand::random::<u64>().max(1);
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('fleet', ?1)",
                params![id.to_string()],
            )
            .map_err(db("writing the fleet identity"))?;
        }
        Ok(SqliteStore { conn, uri })
    }

    /// A read-only connection to the same database, for the API's event queries.
    pub fn reader(&self) -> Result<EventReader, StoreError> {
        let conn = connect(&self.uri, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(EventReader {
            conn: Mutex::new(conn),
        })
    }

    /// The fleet identity of this store.
    pub fn fleet(&self) -> Result<u64, StoreError> {
        let text: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'fleet'", [], |r| {
                r.get(0)
            })
            .map_err(db("reading the fleet identity"))?;
        text.parse().map_err(|e| corrupt("the fleet identity", e))
    }
}

/// Brings the schema to the newest version, one transaction per step.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db("reading the schema version"))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction().map_err(db("starting a migration"))?;
        tx.execute_batch(step)
            .map_err(db(format!("migrating the schema to version {}", i + 1)))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(db("recording the schema version"))?;
        tx.commit().map_err(db("committing a migration"))?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot {
            fleet: self.fleet()?,
            ..Snapshot::default()
        };
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
            .prepare("SELECT name, hello, ready, since_ms, scheduling, created_ms FROM nodes")
            .map_err(db("reading nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(db("reading nodes"))?;
        for row in rows {
            let (name, hello, ready, since, scheduling, created) =
                row.map_err(db("reading nodes"))?;
            let scheduling = Scheduling::parse(&scheduling).ok_or_else(|| {
                corrupt(
                    format!("node {name}"),
                    format!("unknown scheduling state {scheduling:?}"),
                )
            })?;
            let hello: Hello =
                serde_json::from_str(&hello).map_err(|e| corrupt(format!("node {name}"), e))?;
            let since_ms = u64::try_from(since).unwrap_or_default();
            snap.nodes.insert(
                name.clone(),
                NodeRecord {
                    name: name.into(),
                    hello: Arc::new(hello),
                    ready,
                    since_ms,
                    created_ms: u64::try_from(created).unwrap_or_default(),
                    scheduling,
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
            let state = match wasmfleet_proto::decode::<DesiredState>(&frame) {
                Ok(s) => s,
                // A frame of an older wire version: the state is re-derived from the
                // deployments on the next reconcile, so it is not worth refusing to start.
                Err(wasmfleet_proto::DecodeError::UnsupportedVersion { found, .. }) => {
                    tracing::warn!(%node, found, "stored desired state has an old wire version; it will be derived again");
                    continue;
                }
                Err(e) => return Err(corrupt(format!("desired state of node {node}"), e)),
            };
            snap.desired.insert(node, state);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT module, profile, state FROM artifacts")
            .map_err(db("reading artifacts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db("reading artifacts"))?;
        for row in rows {
            let (module, profile, state) = row.map_err(db("reading artifacts"))?;
            let what = || format!("artifact of module {module} for {profile}");
            let digest = module.parse().map_err(|e| corrupt(what(), e))?;
            let state: ArtifactState =
                serde_json::from_str(&state).map_err(|e| corrupt(what(), e))?;
            snap.artifacts.insert((digest, profile), state);
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
            let hello = serde_json::to_string(&*node.hello)
                .map_err(|e| corrupt(format!("node {}", node.name), e))?;
            tx.execute(
                "INSERT OR REPLACE INTO nodes (name, hello, ready, since_ms, scheduling, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    node.name.as_str(),
                    hello,
                    node.ready,
                    node.since_ms as i64,
                    node.scheduling.as_str(),
                    node.created_ms as i64
                ],
            )
            .map_err(db(format!("writing node {}", node.name)))?;
        }
        for (node, state) in &batch.put_desired {
            tx.execute(
                "INSERT OR REPLACE INTO desired (node, frame) VALUES (?1, ?2)",
                params![node, &state[..]],
            )
            .map_err(db(format!("writing the desired state of node {node}")))?;
        }
        for ((module, profile), state) in &batch.put_artifacts {
            let json = serde_json::to_string(state)
                .map_err(|e| corrupt(format!("artifact of module {module}"), e))?;
            tx.execute(
                "INSERT OR REPLACE INTO artifacts (module, profile, state) VALUES (?1, ?2, ?3)",
                params![module.to_hex(), profile, json],
            )
            .map_err(db(format!(
                "writing the artifact of module {module} for {profile}"
            )))?;
        }
        for ev in &batch.events {
            tx.execute(
                "INSERT INTO events (ts_ms, kind, object, reason, message, deployment) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ev.ts_ms as i64, ev.kind, ev.object, ev.reason, ev.message, ev.deployment],
            )
            .map_err(db("writing an event"))?;
        }
        tx.commit().map_err(db("committing"))
    }

    fn trim(&mut self) -> Result<(), StoreError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))
            .optional()
            .map_err(db("trimming events"))?
            .flatten();
        if let Some(max) = max {
            self.conn
                .execute(
                    "DELETE FROM events WHERE id <= ?1",
                    params![max - KEEP_EVENTS as i64],
                )
                .map_err(db("trimming events"))?;
            incremental_vacuum(&self.conn)?;
        }
        Ok(())
    }
}

/// Read-only access to events, for the API. Its connection is its own: reads never wait for
/// the controller.
#[derive(Debug)]
pub struct EventReader {
    conn: Mutex<Connection>,
}

const EVENT_COLS: &str = "SELECT id, ts_ms, kind, object, reason, message, deployment FROM events";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get::<_, i64>(0)? as u64,
        ts_ms: r.get::<_, i64>(1)? as u64,
        kind: r.get(2)?,
        object: r.get(3)?,
        reason: r.get(4)?,
        message: r.get(5)?,
        deployment: r.get(6)?,
    })
}

impl EventReader {
    fn query(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(sql).map_err(db("reading events"))?;
        let rows = stmt
            .query_map(args, event_row)
            .map_err(db("reading events"))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(db("reading events"))?;
        out.reverse();
        Ok(out)
    }

    /// Most recent events, optionally of one object (`kind`, `name`), oldest first.
    pub fn events(
        &self,
        object: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        match object {
            Some((kind, name)) => self.query(
                &format!("{EVENT_COLS} WHERE kind = ?1 AND object = ?2 ORDER BY id DESC LIMIT ?3"),
                params![kind, name, limit],
            ),
            None => self.query(
                &format!("{EVENT_COLS} ORDER BY id DESC LIMIT ?1"),
                params![limit],
            ),
        }
    }

    /// Most recent events of a deployment and its workloads, oldest first.
    pub fn deployment_events(&self, name: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.query(
            &format!("{EVENT_COLS} WHERE deployment = ?1 ORDER BY id DESC LIMIT ?2"),
            params![name, limit],
        )
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
            deployment: Some(object.into()),
        }
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let desired = DesiredState {
            fleet: 3,
            generation: 7,
            workloads: vec![deployment("hello", 1).workload_spec(0).unwrap()],
        };
        let fleet = {
            let mut s = SqliteStore::open(&path).unwrap();
            s.commit(&Batch {
                put_deployments: vec![deployment("hello", 2), deployment("gone", 1)],
                put_nodes: vec![node("a", true, 1 << 30, 4)],
                put_desired: vec![("a".into(), wasmfleet_proto::encode(&desired).into())],
                events: vec![event("hello", "Created")],
                put_artifacts: vec![(
                    (
                        wasmfleet_proto::Digest([7; 32]),
                        "x86_64/wasmtime-50.0.1/1".into(),
                    ),
                    ArtifactState::Ready {
                        digest: "ab".repeat(32),
                        size: 9,
                    },
                )],
                ..Batch::default()
            })
            .unwrap();
            s.commit(&Batch {
                delete_deployments: vec!["gone".into()],
                ..Batch::default()
            })
            .unwrap();
            s.fleet().unwrap()
        };
        assert_ne!(fleet, 0);
        let s = SqliteStore::open(&path).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.fleet, fleet, "the fleet identity is kept");
        assert_eq!(snap.deployments.keys().collect::<Vec<_>>(), ["hello"]);
        assert_eq!(snap.deployments["hello"], deployment("hello", 2));
        assert_eq!(snap.nodes["a"], node("a", true, 1 << 30, 4));
        assert_eq!(snap.desired["a"], desired);
        let art = &snap.artifacts[&(
            wasmfleet_proto::Digest([7; 32]),
            "x86_64/wasmtime-50.0.1/1".to_string(),
        )];
        assert_eq!(art.blob().unwrap().size, 9);
        let r = s.reader().unwrap();
        assert_eq!(
            r.events(Some(("Deployment", "hello")), 10).unwrap()[0].reason,
            "Created"
        );
        assert!(
            r.events(Some(("Deployment", "other")), 10)
                .unwrap()
                .is_empty()
        );
        assert_ne!(
            SqliteStore::open(&dir.path().join("other.db"))
                .unwrap()
                .fleet()
                .unwrap(),
            fleet,
            "a new store is a new fleet"
        );
    }

    #[test]
    fn deployment_events_are_found_by_index_behind_many_others() {
        let mut s = SqliteStore::in_memory().unwrap();
        let r = s.reader().unwrap();
        let mut mine = event("hello-0", "Scheduled");
        mine.kind = "Workload".into();
        mine.deployment = Some("hello".into());
        s.commit(&Batch {
            events: vec![event("hello", "Created"), mine],
            ..Batch::default()
        })
        .unwrap();
        let noise: Vec<Event> = (0..5_000)
            .map(|i| event(&format!("d{i}"), "Created"))
            .collect();
        s.commit(&Batch {
            events: noise,
            ..Batch::default()
        })
        .unwrap();
        let found = r.deployment_events("hello", 50).unwrap();
        let reasons: Vec<_> = found.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Created", "Scheduled"]);
    }

    #[test]
    fn a_foundation_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V0).unwrap();
            conn.execute_batch(
                "CREATE TABLE logs (id INTEGER PRIMARY KEY, line TEXT);
                 INSERT INTO events (ts_ms, kind, object, reason, message) VALUES (1, 'Node', 'a', 'NodeReady', 'm');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let events = s.reader().unwrap().events(None, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].deployment, None);
        let logs: Option<String> = s
            .conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE name = 'logs'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(logs, None, "logs moved to their own store");
        drop(s);
        SqliteStore::open(&path).unwrap(); // idempotent
    }

    #[test]
    fn corrupt_rows_are_reported_with_their_name() {
        let s = SqliteStore::in_memory().unwrap();
        s.conn
            .execute(
                // The current wire version, then a truncated message.
                &format!(
                    "INSERT INTO desired (node, frame) VALUES ('n1', x'{:02x}03')",
                    wasmfleet_proto::WIRE_VERSION
                ),
                [],
            )
            .unwrap();
        let err = s.load().unwrap_err().to_string();
        assert!(err.contains("desired state of node n1"), "{err}");
    }
}
