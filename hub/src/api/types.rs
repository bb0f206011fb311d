//! JSON types of the HTTP API, shared by the server and the CLI (the CLI reaches the hub only
//! through these, never through the store).

use serde::{Deserialize, Serialize};

pub use crate::model::{
    ApplyOutcome, DeploymentSpec, DeploymentView, Event, LogRecord, NodeView, WorkloadView,
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

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the offending input.
    pub error: String,
}
