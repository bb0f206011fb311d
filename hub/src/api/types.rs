//! JSON types of the HTTP API, shared by the server and the CLI (the CLI reaches the hub only
//! through these, never through the store).

use serde::{Deserialize, Serialize};

pub use crate::model::{
    ApplyOutcome, DeploymentSpec, DeploymentView, Event, LogRecord, NodeView, Scheduling,
    WorkloadView,
};

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

/// Body and answer of `PUT /v1/nodes/{name}/scheduling`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulingChange {
    /// `Enabled`, `Cordoned` or `Drained`.
    pub scheduling: Scheduling,
    /// In the answer: the workloads that left the node.
    #[serde(default)]
    pub moved: Vec<String>,
}

/// `GET /v1/deployments/{name}/rollout`: where the rollout of its revision stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// Deployment name.
    pub deployment: String,
    /// The revision rolled out.
    pub revision: u64,
    /// The last good revision, if any.
    #[serde(default)]
    pub stable: Option<u64>,
    /// `Progressing`, `Paused`, `Complete` or `Failed`.
    pub phase: String,
    /// Current wave, from 1.
    pub wave: u32,
    /// Number of waves.
    pub waves: u32,
    /// Replicas of the deployment.
    pub replicas: u32,
    /// Replicas switched to the revision.
    pub updated: u32,
    /// Replicas Running (or Succeeded) at the revision.
    pub ready: u32,
    /// Why it stands where it does (a failure's cause).
    #[serde(default)]
    pub message: String,
}

/// One row of `rollout history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    /// Revision number.
    pub revision: u64,
    /// What changed.
    pub cause: String,
    /// When, ms since the Unix epoch.
    pub created_ms: u64,
    /// The deployment's current revision.
    pub current: bool,
    /// The last good revision (what a failure rolls back to).
    pub stable: bool,
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the offending input.
    pub error: String,
}
