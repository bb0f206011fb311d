//! JSON types of the HTTP API, shared by the server and the CLI (the CLI reaches the hub only
//! through these, never through the store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::model::{DeploymentSpec, WorkloadView};
pub use crate::store::{Event, LogRecord};

/// Body of `PUT /v1/deployments/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// The declared spec.
    pub spec: DeploymentSpec,
}

/// What an apply did, as kubectl prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    /// A new deployment.
    Created,
    /// An existing deployment changed.
    Configured,
    /// Same spec as stored: nothing happened.
    Unchanged,
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

/// A node in `get nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// `Ready` or `NotReady`.
    pub status: String,
    /// When the status last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// Agent version it announced.
    pub agent_version: String,
    /// `Linux` or `Mcu`.
    pub device_class: String,
    /// Memory offered to workloads, bytes.
    pub memory_bytes: u64,
    /// Most instances it accepts.
    pub max_workloads: u32,
    /// Labels it announced.
    pub labels: BTreeMap<String, String>,
    /// Workloads placed on it.
    pub workloads: usize,
    /// Generation of the desired state the hub sent it.
    pub desired_generation: u64,
    /// Generation it last reported acting on.
    pub observed_generation: u64,
}

/// A deployment in `get deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    /// Deployment name.
    pub name: String,
    /// Declared spec.
    pub spec: DeploymentSpec,
    /// Spec generation.
    pub generation: u64,
    /// Template revision.
    pub revision: u64,
    /// Replicas Running at the current revision.
    pub ready_replicas: u32,
    /// Replicas placed on a node.
    pub scheduled_replicas: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
}

/// An error body: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, naming the offending input.
    pub error: String,
}
