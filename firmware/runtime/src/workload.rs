//! What an instance runs as: the parts of a workload spec the host API needs, and its CPU
//! budgets.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use wasmfleet_proto::{Capabilities, ConfigEntry, WorkloadSpec};

/// CPU budgets in fuel units (about one per wasm instruction). Fuel, not time: these cores
/// have no epoch interruption, and a budget is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fuel {
    /// For instantiation and each handler call (`on_start`, `on_timer`, …).
    pub per_call: u64,
    /// For `on_stop` (the Linux agent gives it one second).
    pub on_stop: u64,
}

impl Default for Fuel {
    /// 2 million units each: an estimate of a second of Pulley on a 64 MHz Cortex-M4, not a
    /// measurement; boards should calibrate.
    fn default() -> Fuel {
        Fuel {
            per_call: 2_000_000,
            on_stop: 2_000_000,
        }
    }
}

/// What an instance runs as: the parts of a [`WorkloadSpec`] the host API needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The node's name (`wasmfleet.node`).
    pub node: String,
    /// The workload's name (`wasmfleet.workload`; log lines carry it).
    pub name: String,
    /// Its deployment (`wasmfleet.deployment`; names the KV store).
    pub deployment: String,
    /// Application namespace (`wasmfleet.namespace`; topics are relative to it).
    pub namespace: String,
    /// `spec.config`, for `config_get`.
    pub config: Vec<ConfigEntry>,
    /// What the module may touch.
    pub capabilities: Capabilities,
    /// Ceiling on all linear memories and tables together, bytes.
    pub memory_bytes: u64,
    /// CPU budgets.
    pub fuel: Fuel,
}

impl Workload {
    /// The workload of `spec` on node `node`.
    pub fn from_spec(node: &str, spec: &WorkloadSpec, fuel: Fuel) -> Workload {
        Workload {
            node: node.to_string(),
            name: spec.name.clone(),
            deployment: spec.deployment.clone(),
            namespace: spec.namespace.clone(),
            config: spec.config.clone(),
            capabilities: spec.capabilities.clone(),
            memory_bytes: spec.limits.memory_bytes,
            fuel,
        }
    }
}
