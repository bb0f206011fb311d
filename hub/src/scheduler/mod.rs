//! Pure placement of workload replicas onto nodes.
//!
//! `schedule` is a function of the deployments, the node inventory, the current placement and
//! the time: no I/O, no clock. It is stable (a replica stays where it is while its node is
//! usable), spreads replicas of one deployment across nodes, respects each node's memory
//! and instance capacity, and places a deployment only on nodes that offer every device its
//! capabilities name (`i2c-1`, `gpio:17`...).

use std::collections::BTreeMap;

use wasmfleet_proto::DeviceClass;

use crate::model::{DeploymentRecord, NodeRecord};

/// Where every replica goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Workload name → node, for every replica that has a node.
    pub assigned: BTreeMap<String, String>,
    /// Replicas no node can take now, with the reason.
    pub unschedulable: BTreeMap<String, String>,
}

/// Inputs of one scheduling pass.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Every deployment.
    pub deployments: &'a BTreeMap<String, DeploymentRecord>,
    /// Every known node.
    pub nodes: &'a BTreeMap<String, NodeRecord>,
    /// Current placement: workload name → node.
    pub current: &'a BTreeMap<String, String>,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// How long a NotReady node keeps its replicas before they move elsewhere.
    pub not_ready_grace_ms: u64,
}

/// Bytes of workload specs one node's desired state may hold: one frame, less headroom for
/// the generation and framing. Placement treats it as a capacity like memory, so no node's
/// desired state can outgrow what the wire carries.
pub const DESIRED_STATE_BUDGET: usize = wasmfleet_proto::MAX_FRAME_LEN - 1024;

#[derive(Default, Clone, Copy)]
struct Usage {
    memory: u64,
    count: u32,
    bytes: usize,
}

/// Places every replica of every deployment.
pub fn schedule(inputs: Inputs<'_>) -> Placement {
    let mut usage: BTreeMap<&str, Usage> = BTreeMap::new();
    let mut per_deployment: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut placement = Placement::default();
    let mut pending = Vec::new();
    // Bytes one replica adds to a desired state, measured once per deployment and pass.
    let spec_bytes: BTreeMap<&str, usize> = inputs
        .deployments
        .values()
        .map(|d| (d.name.as_str(), d.wire_size()))
        .collect();
    let devices: BTreeMap<&str, Vec<String>> = inputs
        .deployments
        .values()
        .map(|d| (d.name.as_str(), d.spec.capabilities.to_wire().devices()))
        .collect();
    let offers = |node: &NodeRecord, dep: &DeploymentRecord| {
        selects(dep, node)
            && devices
                .get(dep.name.as_str())
                .is_none_or(|want| want.iter().all(|d| node.hello.devices.contains(d)))
    };
    let demand = |dep: &DeploymentRecord| Demand {
        memory: dep.spec.memory_bytes,
        bytes: spec_bytes
            .get(dep.name.as_str())
            .copied()
            .unwrap_or(usize::MAX),
    };

    // Pass 1: keep replicas whose node is still usable, so a change elsewhere never shuffles them.
    for dep in inputs.deployments.values() {
        for ordinal in 0..dep.spec.replicas {
            let workload = dep.workload_name(ordinal);
            let kept = inputs
                .current
                .get(&workload)
                .and_then(|node| inputs.nodes.get_key_value(node.as_str()))
                .filter(|(_, node)| keeps_replicas(node, inputs))
                .filter(|(_, node)| offers(node, dep))
                .filter(|(name, node)| fits(node, usage.get(name.as_str()), demand(dep)));
            match kept {
                Some((name, _)) => {
                    take(&mut usage, &mut per_deployment, name, dep, demand(dep));
                    placement.assigned.insert(workload, name.clone());
                }
                None => pending.push((dep, workload)),
            }
        }
    }

    // Pass 2: place the rest on the Ready node with the fewest replicas of the same
    // deployment, then the fewest workloads, then by name (deterministic).
    for (dep, workload) in pending {
        let best = inputs
            .nodes
            .iter()
            .filter(|(_, node)| node.ready)
            .filter(|(_, node)| offers(node, dep))
            .filter(|(name, node)| fits(node, usage.get(name.as_str()), demand(dep)))
            .min_by_key(|(name, _)| {
                let same = per_deployment
                    .get(&(name.as_str(), dep.name.as_str()))
                    .copied();
                let total = usage.get(name.as_str()).map_or(0, |u| u.count);
                (same.unwrap_or(0), total, name.as_str())
            });
        match best {
            Some((name, _)) => {
                take(&mut usage, &mut per_deployment, name, dep, demand(dep));
                placement.assigned.insert(workload, name.clone());
            }
            None => {
                let want = devices
                    .get(dep.name.as_str())
                    .map_or(&[][..], Vec::as_slice);
                let reason = no_fit_reason(inputs, dep, want);
                placement.unschedulable.insert(workload, reason);
            }
        }
    }
    placement
}

/// The label microcontroller nodes carry (value `mcu`).
pub const DEVICE_CLASS_LABEL: &str = "wasmfleet.dev/device-class";

/// Whether `dep` may run on `node`: the node carries every label of its `nodeSelector`, and a
/// microcontroller only when the selector asks for one (an MCU runs no WASI command and has
/// kilobytes of memory: nothing lands there by accident, as a tainted node in Kubernetes).
fn selects(dep: &DeploymentRecord, node: &NodeRecord) -> bool {
    let has = |k: &str, v: &str| node.hello.labels.iter().any(|l| l.key == k && l.value == v);
    let wants_mcu = dep
        .spec
        .node_selector
        .get(DEVICE_CLASS_LABEL)
        .is_some_and(|v| v == "mcu");
    (node.hello.device_class == DeviceClass::Linux || wants_mcu)
        && dep.spec.node_selector.iter().all(|(k, v)| has(k, v))
}

/// A node keeps its replicas while Ready, and for a grace period after it disconnects
/// (a gateway rebooting must not cause a fleet-wide reshuffle).
fn keeps_replicas(node: &NodeRecord, inputs: Inputs<'_>) -> bool {
    node.ready || inputs.now_ms.saturating_sub(node.since_ms) < inputs.not_ready_grace_ms
}

/// What one replica of a deployment takes from a node.
#[derive(Clone, Copy)]
struct Demand {
    memory: u64,
    bytes: usize,
}

fn fits(node: &NodeRecord, used: Option<&Usage>, want: Demand) -> bool {
    let used = used.copied().unwrap_or_default();
    let cap = node.hello.capacity;
    used.count < cap.max_workloads
        && used.memory.saturating_add(want.memory) <= cap.memory_bytes
        && used.bytes.saturating_add(want.bytes) <= DESIRED_STATE_BUDGET
}

fn take<'a>(
    usage: &mut BTreeMap<&'a str, Usage>,
    per_deployment: &mut BTreeMap<(&'a str, &'a str), u32>,
    node: &'a str,
    dep: &'a DeploymentRecord,
    want: Demand,
) {
    let u = usage.entry(node).or_default();
    u.memory += want.memory;
    u.count += 1;
    u.bytes += want.bytes;
    *per_deployment.entry((node, dep.name.as_str())).or_default() += 1;
}

/// Why no node fits, as `kubectl describe` says it: how many Ready nodes lack the devices, how
/// many lack room.
fn no_fit_reason(inputs: Inputs<'_>, dep: &DeploymentRecord, devices: &[String]) -> String {
    let all_ready = inputs.nodes.values().filter(|n| n.ready).count();
    let ready: Vec<&NodeRecord> = inputs
        .nodes
        .values()
        .filter(|n| n.ready && selects(dep, n))
        .collect();
    if all_ready == 0 {
        return "no Ready nodes".into();
    }
    if ready.is_empty() {
        let selector: Vec<String> = dep
            .spec
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return format!(
            "0/{all_ready} Ready nodes match its nodeSelector ({})",
            if selector.is_empty() {
                "none: microcontroller nodes need wasmfleet.dev/device-class=mcu".to_string()
            } else {
                selector.join(", ")
            }
        );
    }
    let lacking = ready
        .iter()
        .filter(|n| !devices.iter().all(|d| n.hello.devices.contains(d)))
        .count();
    let room = format!(
        "room for {} of memory, one more instance and its spec",
        crate::model::quantity::format_bytes(dep.spec.memory_bytes)
    );
    match lacking {
        0 => format!("0/{} Ready nodes have {room}", ready.len()),
        n if n == ready.len() => format!(
            "0/{n} Ready nodes offer the devices it needs ({})",
            devices.join(", ")
        ),
        n => format!(
            "0/{} Ready nodes fit: {n} lack the devices it needs ({}), {} lack {room}",
            ready.len(),
            devices.join(", "),
            ready.len() - n
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests;
