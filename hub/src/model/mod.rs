//! The hub's domain types: what users declare (deployments), what nodes are, and how both are
//! validated. Pure data: no I/O, shared by the API, the controllers and the CLI.

pub mod artifact;
pub mod capabilities;
pub mod deployment;
pub mod interned;
pub mod manifest;
pub mod node;
pub mod node_desired;
pub mod node_name;
pub mod records;
pub mod rollout;
pub mod views;
pub mod workload;

/// Byte quantities: the grammar shared with `edge-agent --memory`.
pub use wasmfleet_common::quantity;

pub use artifact::{ArtifactKey, ArtifactState, code_for, profile_key};
pub use deployment::{DeploymentRecord, DeploymentSpec, SpecError};
pub use node::{NodeName, NodeRecord, Scheduling};
pub use node_desired::{NodeDesired, Placed, Templates};
pub use records::{Event, LogRecord};
pub use views::{ApplyOutcome, DeploymentView, NodeView};
pub use workload::WorkloadView;
