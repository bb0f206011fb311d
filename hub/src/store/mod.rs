//! Persistence behind one trait, so the embedded SQLite default and a PostgreSQL backend for
//! fleets that outgrow one machine are interchangeable. The controller is the only writer.

pub mod blobs;
mod sqlite;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmfleet_proto::DesiredState;

pub use blobs::{BlobError, BlobStore};
pub use sqlite::SqliteStore;

use crate::model::{DeploymentRecord, NodeRecord};

/// Why the store failed. Messages name what was being read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error while {context}: {source}")]
    Db {
        /// What the store was doing.
        context: String,
        /// The engine's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row no longer decodes (written by an incompatible version, or corrupted).
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which row.
        what: String,
        /// Why it does not decode.
        reason: String,
    },
}

/// Everything the hub needs to resume after a restart.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every deployment.
    pub deployments: BTreeMap<String, DeploymentRecord>,
    /// Every known node.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The last desired state sent to each node.
    pub desired: BTreeMap<String, DesiredState>,
}

/// Something that happened, for `wasmfleet describe` (like Kubernetes events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Ascending id (0 before it is stored).
    pub id: u64,
    /// When, ms since the Unix epoch.
    pub ts_ms: u64,
    /// `Deployment`, `Node` or `Workload`.
    pub kind: String,
    /// Name of the object.
    pub object: String,
    /// CamelCase reason, e.g. `Scheduled`, `NodeNotReady`.
    pub reason: String,
    /// Detail.
    pub message: String,
}

/// One output line of a workload, as stored by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// Ascending id: the cursor for `logs -f`.
    pub id: u64,
    /// Node time of the line, ms since the Unix epoch.
    pub ts_ms: u64,
    /// Deployment the workload belongs to.
    pub deployment: String,
    /// Workload name.
    pub workload: String,
    /// Node that ran it.
    pub node: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text.
    pub line: String,
}

/// Writes that must land together (one reconcile pass), or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    /// Deployments created or changed.
    pub put_deployments: Vec<DeploymentRecord>,
    /// Deployments removed.
    pub delete_deployments: Vec<String>,
    /// Nodes announced or changed.
    pub put_nodes: Vec<NodeRecord>,
    /// New desired states per node.
    pub put_desired: Vec<(String, DesiredState)>,
    /// Events to record.
    pub events: Vec<Event>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.put_deployments.is_empty()
            && self.delete_deployments.is_empty()
            && self.put_nodes.is_empty()
            && self.put_desired.is_empty()
            && self.events.is_empty()
    }
}

/// The hub's persistence.
pub trait Store: Send {
    /// Reads everything needed to resume.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Applies `batch` atomically.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Most recent events, optionally for one object (`kind`, `name`), oldest first.
    fn events(&self, object: Option<(&str, &str)>, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// Appends log lines (their `id`s are assigned by the store).
    fn append_logs(&mut self, lines: &[LogRecord]) -> Result<(), StoreError>;
    /// Log lines of `deployment` with id greater than `after`, oldest first; `after = None`
    /// means the most recent `limit` lines.
    fn logs(
        &self,
        deployment: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError>;
    /// Drops the oldest events and log lines beyond the retention limits.
    fn trim(&mut self) -> Result<(), StoreError>;
}
