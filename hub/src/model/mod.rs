//! The hub's domain types: what users declare (deployments), what nodes are, and how both are
//! validated. Pure data: no I/O, shared by the API, the controllers and the CLI.

pub mod deployment;
pub mod manifest;
pub mod node;
pub mod quantity;
pub mod workload;

pub use deployment::{DeploymentRecord, DeploymentSpec, SpecError};
pub use node::NodeRecord;
pub use workload::WorkloadView;
