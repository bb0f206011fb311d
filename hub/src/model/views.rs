//! What users see of the fleet: the rows of `get nodes` and `get deployments`, and the outcome
//! of an apply. Derived from the controller's state; shared by the API and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DeploymentSpec;

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

/// A node in `get nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// `Ready` or `NotReady`, with `,SchedulingDisabled` when cordoned or drained.
    pub status: String,
    /// When the status last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// When the hub first heard of it, ms since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// When the hub last heard from it (a heartbeat or announcement since the hub started),
    /// ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// `Enabled`, `Cordoned` or `Drained`.
    #[serde(default)]
    pub scheduling: String,
    /// Memory limits of the workloads placed on it, bytes.
    #[serde(default)]
    pub allocated_memory_bytes: u64,
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
    /// Its engine profile: target, wasmtime version and settings fingerprint.
    #[serde(default)]
    pub engine: String,
    /// Whether it compiles source modules itself.
    #[serde(default)]
    pub compiler: bool,
    /// Devices it offers to modules (`i2c-1`, `gpio:17`).
    #[serde(default)]
    pub devices: Vec<String>,
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
    /// Replicas it should have: `spec.replicas`, or with `placement: every-node` the number
    /// of nodes that match it (placed or not). Absent from older hubs: 0.
    #[serde(default)]
    pub desired_replicas: u32,
    /// Replicas Running at the current revision.
    pub ready_replicas: u32,
    /// Replicas placed on a node.
    pub scheduled_replicas: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
}
