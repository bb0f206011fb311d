//! What the hub records as it goes: events (for `describe`) and workload log lines. Plain
//! data, written by the store and served by the API.

use serde::{Deserialize, Serialize};

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
    /// The deployment it concerns (itself, or the deployment of a workload), so `describe`
    /// finds every event of a deployment by index however many others happened since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
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
    /// it prints to a terminal; JSON keeps the text).
    pub line: String,
}
