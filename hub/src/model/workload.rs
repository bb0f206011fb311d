//! Workload instances as users see them (`wasmfleet get workloads`): derived, never stored.

use serde::{Deserialize, Serialize};

/// One replica of a deployment and what its node reports about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadView {
    /// Workload name, `{deployment}-{ordinal}`.
    pub name: String,
    /// Owning deployment.
    pub deployment: String,
    /// Node it is placed on, if any.
    pub node: Option<String>,
    /// Pending, Running, Succeeded, Failed, or Unknown (node NotReady).
    pub phase: String,
    /// Restarts the agent reported.
    pub restarts: u32,
    /// Template revision the node runs (0 until reported).
    pub revision: u64,
    /// Exit code of the last run, if any.
    pub exit_code: Option<i32>,
    /// Why it is Pending, Failed or Unknown.
    pub message: String,
}
