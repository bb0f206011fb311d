//! Nodes as the hub knows them.

use serde::{Deserialize, Serialize};
use wasmfleet_proto::Hello;

/// A node that has announced itself at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node name (its MQTT client id and topic segment).
    pub name: String,
    /// What it last announced.
    pub hello: Hello,
    /// Connected (its presence is Online).
    pub ready: bool,
    /// When `ready` last changed, ms since the Unix epoch.
    pub since_ms: u64,
}

/// Readiness as a kubectl user reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeCondition {
    /// Connected and schedulable.
    Ready,
    /// Disconnected; its workloads move elsewhere after a grace period.
    NotReady,
}
