//! JSON types of the HTTP API, shared by the server and the CLI (the CLI reaches the hub only
//! through these, never through the store).

use serde::{Deserialize, Serialize};

pub use crate::model::{ApplyOutcome, DeploymentSpec, DeploymentView, NodeView, WorkloadView};

/// Body of `PUT /v1/deployments/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// The declared spec.
    pub spec: DeploymentSpec,
}

/// Answer of an apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    /// Deployment name.
    pub name: String,
    /// What happened.
    pub outcome: ApplyOutcome,
    /// Generation after the apply.
    pub generation: u64,
}

/// Something that happened, for `wasmfleet describe` (like Kubernetes events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Ascending id.
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

impl From<crate::store::Event> for Event {
    fn from(e: crate::store::Event) -> Self {
        Event {
            id: e.id,
            ts_ms: e.ts_ms,
            kind: e.kind,
            object: e.object,
            reason: e.reason,
            message: e.message,
        }
    }
}

/// One output line of a workload.
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
    /// `stdout`, `stderr`, or `agent` (written by the agent about the workload).
    pub stream: String,
    /// The text, exactly as the workload wrote it (the CLI escapes control characters when
    /// it prints to a terminal; JSON keeps the bytes).
    pub line: String,
}

impl From<crate::store::LogRecord> for LogRecord {
    fn from(l: crate::store::LogRecord) -> Self {
        LogRecord {
            id: l.id,
            ts_ms: l.ts_ms,
            deployment: l.deployment,
            workload: l.workload,
            node: l.node,
            stream: l.stream,
            line: l.line,
        }
    }
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the offending input.
    pub error: String,
}
