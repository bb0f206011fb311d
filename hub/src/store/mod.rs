//! Persistence behind one trait, so the embedded SQLite default and a PostgreSQL backend for
//! fleets that outgrow one machine are interchangeable. The controller is the only writer of
//! the fleet state ([`Store`]); reads of events go through their own connection
//! ([`EventReader`]), so `describe` never waits for the controller. Workload logs live in a
//! store of their own ([`logs`]): high-volume, disposable, retained by bytes and age.

pub mod blobs;
pub mod logs;
mod sqlite;

use std::collections::BTreeMap;

use bytes::Bytes;
use wasmfleet_proto::DesiredState;

pub use blobs::{BlobError, BlobStore};
pub use logs::{LogReader, LogStore, Retention};
pub use sqlite::{EventReader, SqliteStore};

use crate::model::{ArtifactKey, ArtifactState, DeploymentRecord, NodeRecord};
pub use crate::model::{Event, LogRecord};

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
    /// Identity of this fleet store ([`wasmfleet_proto::DesiredState::fleet`]), chosen at
    /// random when the store was created.
    pub fleet: u64,
    /// Every deployment.
    pub deployments: BTreeMap<String, DeploymentRecord>,
    /// Every known node.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The last desired state sent to each node.
    pub desired: BTreeMap<String, DesiredState>,
    /// Precompiled artifacts by module and engine profile.
    pub artifacts: BTreeMap<ArtifactKey, ArtifactState>,
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
    /// New desired states per node, encoded (`wasmfleet_proto::encode`): the frames that
    /// are published, shared with their publications.
    pub put_desired: Vec<(String, Bytes)>,
    /// Events to record.
    pub events: Vec<Event>,
    /// Artifacts compiled (or found impossible to compile).
    pub put_artifacts: Vec<(ArtifactKey, ArtifactState)>,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.put_deployments.is_empty()
            && self.delete_deployments.is_empty()
            && self.put_nodes.is_empty()
            && self.put_desired.is_empty()
            && self.events.is_empty()
            && self.put_artifacts.is_empty()
    }
}

/// The hub's persistence of fleet state.
pub trait Store: Send {
    /// Reads everything needed to resume.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Applies `batch` atomically.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Drops the oldest events beyond retention.
    fn trim(&mut self) -> Result<(), StoreError>;
}
