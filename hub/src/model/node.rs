//! Nodes as the hub knows them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmfleet_proto::Hello;

pub use super::node_name::NodeName;

/// A node that has announced itself at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node name (its MQTT client id and topic segment).
    pub name: NodeName,
    /// What it last announced: shared with every node that announced the same
    /// ([`crate::model::interned`]).
    pub hello: Arc<Hello>,
    /// Connected (its presence is Online).
    pub ready: bool,
    /// When `ready` last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// When the hub first heard of it, ms since the Unix epoch (`AGE` in `get nodes`).
    pub created_ms: u64,
    /// Whether new replicas may land here (`wasmfleet cordon|drain|uncordon`).
    pub scheduling: Scheduling,
}

/// Whether a node takes new replicas, as `kubectl cordon` and `drain` set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Scheduling {
    /// Schedulable.
    #[default]
    Enabled,
    /// No new replicas; those it runs stay (`SchedulingDisabled`).
    Cordoned,
    /// No new replicas, and its replicas are moved elsewhere. Every-node workloads stay, as
    /// DaemonSet pods do under `kubectl drain --ignore-daemonsets`.
    Drained,
}

impl Scheduling {
    /// The column and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduling::Enabled => "Enabled",
            Scheduling::Cordoned => "Cordoned",
            Scheduling::Drained => "Drained",
        }
    }

    /// Parses [`Scheduling::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Cordoned, Self::Drained]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Readiness as a kubectl user reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeCondition {
    /// Connected and schedulable.
    Ready,
    /// Disconnected; its workloads move elsewhere after a grace period.
    NotReady,
}
