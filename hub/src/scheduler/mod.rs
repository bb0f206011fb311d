//! Pure placement of workloads onto nodes.
//!
//! `schedule` is a function of the deployments, the node inventory, the current placement and
//! the time: no I/O, no clock, no dependence on map insertion order. It re-runs on every
//! change (deployments, presence, scheduling state, ticks), so whatever it does not return is
//! removed: desired states are derived from its result.
//!
//! Semantics, as Kubernetes users know them:
//!
//! - **Stable.** A workload stays where it is while its node may keep it, so a change
//!   elsewhere never shuffles running instances; new ones are spread across nodes (fewest
//!   replicas of the same deployment, then fewest workloads, then by name).
//! - **Selection.** A node runs a deployment only if it carries every `nodeSelector` label,
//!   satisfies every node-affinity expression, offers every device its capabilities name, and
//!   is no microcontroller unless the deployment selects `wasmfleet.dev/device-class=mcu`.
//!   Nodes carry built-in labels ([`NODE_LABEL`], [`DEVICE_CLASS_LABEL`], [`ARCH_LABEL`]).
//! - **Room.** Memory (`resources.memory`), instance slots (`capacity.max_workloads`) and the
//!   bytes of its desired state (one frame) bound what a node takes, every-node workloads
//!   included.
//! - **Replicas** (`placement: replicas`) land only on Ready, schedulable (`Enabled`) nodes.
//!   A cordoned node keeps the replicas it has; a drained one keeps none. A NotReady node
//!   keeps them for `not_ready_grace_ms`, then they move; when it returns they stay where
//!   they went.
//! - **Every-node** (`placement: every-node`, a DaemonSet): one workload bound to each
//!   matching node, named after it ([`every_node_workload_name`]). New ones land on Ready
//!   nodes, cordoned and drained ones included (as DaemonSets tolerate `unschedulable`);
//!   they stay on a NotReady node and never move. A node that stops matching loses its own.
//! - **Reasons.** Workloads no node takes are listed with a reason a person reads, as
//!   `FailedScheduling` ([`reasons`]).

mod capacity;
mod every_node;
mod node_change;
mod nodes;
mod reasons;
mod selector;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::deployment::PlacementPolicy;
use crate::model::{DeploymentRecord, NodeName, NodeRecord, Scheduling};

pub use capacity::DESIRED_STATE_BUDGET;
pub use node_change::node_change_may_move;
pub use nodes::{ARCH_LABEL, DEVICE_CLASS_LABEL, NODE_LABEL, device_class, node_labels};

use capacity::{Usage, room};
use nodes::{Candidate, index_of};
use reasons::Fail;
use selector::Plan;

/// Where every workload goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Workload name → node, for every workload that has a node.
    pub assigned: BTreeMap<String, NodeName>,
    /// Workloads no node can take now, with the reason.
    pub unschedulable: BTreeMap<String, String>,
}

impl Placement {
    /// The names of `dep`'s workloads, placed or not, sorted: `{name}-{ordinal}` for each
    /// replica, or the every-node workloads this placement holds (one per matching node).
    pub fn workloads_of(&self, dep: &DeploymentRecord) -> Vec<String> {
        match dep.spec.placement {
            PlacementPolicy::Replicas => (0..dep.spec.replicas)
                .map(|o| dep.workload_name(o))
                .collect(),
            PlacementPolicy::EveryNode => {
                let mut names: Vec<String> = every_node::workloads_in(&self.assigned, &dep.name)
                    .map(|(w, _)| w.clone())
                    .collect();
                names.extend(
                    every_node::workloads_in(&self.unschedulable, &dep.name)
                        .map(|(w, _)| w.clone()),
                );
                names.sort();
                names.dedup();
                names
            }
        }
    }
}

/// Inputs of one scheduling pass.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Every deployment.
    pub deployments: &'a BTreeMap<String, DeploymentRecord>,
    /// Every known node.
    pub nodes: &'a BTreeMap<NodeName, Arc<NodeRecord>>,
    /// Current placement: workload name → node.
    pub current: &'a BTreeMap<String, NodeName>,
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// How long a NotReady node keeps its replicas before they move elsewhere.
    pub not_ready_grace_ms: u64,
}

/// The usual name of the workload of every-node deployment `deployment` on `node`
/// (`{deployment}-{8 hex digits}`; another salt only if two nodes' names hash alike).
pub fn every_node_workload_name(deployment: &str, node: &str) -> String {
    every_node::workload_name(deployment, node, 0)
}

/// What a pass has placed so far.
struct Pass<'a> {
    nodes: &'a [Candidate<'a>],
    usage: Vec<Usage>,
    /// (deployment, node index) → its replicas there, for spreading.
    spread: BTreeMap<(&'a str, usize), u32>,
    placement: Placement,
}

impl<'a> Pass<'a> {
    fn room(&self, node: usize, plan: &Plan<'_>) -> Option<Fail<'static>> {
        room(
            self.nodes[node].record.hello.capacity,
            self.usage[node],
            plan.demand,
        )
    }

    fn take(&mut self, node: usize, plan: &Plan<'a>, workload: String) {
        self.usage[node].add(plan.demand);
        *self
            .spread
            .entry((plan.dep.name.as_str(), node))
            .or_default() += 1;
        self.placement
            .assigned
            .insert(workload, self.nodes[node].record.name.clone());
    }

    /// The node a new replica goes to among `eligible`: room for it, then the fewest replicas
    /// of the same deployment, the fewest workloads, the name (deterministic).
    fn best(&self, plan: &Plan<'_>, eligible: &[usize]) -> Option<usize> {
        eligible
            .iter()
            .copied()
            .filter(|&i| self.room(i, plan).is_none())
            .min_by_key(|&i| {
                let same = self.spread.get(&(plan.dep.name.as_str(), i)).copied();
                (same.unwrap_or(0), self.usage[i].count, i)
            })
    }
}

/// Places every workload of every deployment.
pub fn schedule(inputs: Inputs<'_>) -> Placement {
    let nodes: Vec<Candidate<'_>> = inputs
        .nodes
        .iter()
        .map(|(name, record)| Candidate::new(name, record))
        .collect();
    let plans: Vec<Plan<'_>> = inputs.deployments.values().map(Plan::new).collect();
    let mut pass = Pass {
        nodes: &nodes,
        usage: vec![Usage::default(); nodes.len()],
        spread: BTreeMap::new(),
        placement: Placement::default(),
    };
    let mut bound = Vec::new();
    let mut counted = Vec::new();

    // Pass 1: keep what may stay, so a change elsewhere never shuffles it.
    for plan in &plans {
        match plan.dep.spec.placement {
            PlacementPolicy::Replicas => {
                for ordinal in 0..plan.dep.spec.replicas {
                    let workload = plan.dep.workload_name(ordinal);
                    let kept = inputs
                        .current
                        .get(&workload)
                        .and_then(|node| index_of(&nodes, node))
                        .filter(|&i| keeps_replicas(nodes[i].record, inputs))
                        .filter(|&i| plan.mismatch(&nodes[i]).is_none())
                        .filter(|&i| pass.room(i, plan).is_none());
                    match kept {
                        Some(i) => pass.take(i, plan, workload),
                        None => counted.push((plan, workload)),
                    }
                }
            }
            PlacementPolicy::EveryNode => {
                let matching: Vec<usize> = (0..nodes.len())
                    .filter(|&i| plan.mismatch(&nodes[i]).is_none())
                    .collect();
                for (i, workload) in
                    every_node::bind(&plan.dep.name, &nodes, &matching, inputs.current)
                {
                    // Bound to its node whatever the node's state: never moved elsewhere.
                    let held =
                        inputs.current.get(&workload).map(NodeName::as_str) == Some(nodes[i].name);
                    if held && pass.room(i, plan).is_none() {
                        pass.take(i, plan, workload);
                    } else {
                        bound.push((plan, i, workload));
                    }
                }
            }
        }
    }

    // Pass 2a: new every-node workloads, on their node if it is Ready and has room. First,
    // since they can go nowhere else.
    let mut bound_failed = Vec::new();
    for (plan, i, workload) in bound {
        if nodes[i].record.ready && pass.room(i, plan).is_none() {
            pass.take(i, plan, workload);
        } else {
            bound_failed.push((plan, i, workload));
        }
    }

    // Pass 2b: new replicas, deployment by deployment (pending ones come grouped).
    let mut counted_failed = Vec::new();
    let mut eligible: (Option<&str>, Vec<usize>) = (None, Vec::new());
    for (plan, workload) in counted {
        let name = plan.dep.name.as_str();
        if counted_failed
            .last()
            .is_some_and(|(p, _): &(&Plan<'_>, String)| p.dep.name == name)
        {
            // Nothing was placed since its previous replica failed: this one fails too.
            counted_failed.push((plan, workload));
            continue;
        }
        if eligible.0 != Some(name) {
            eligible = (
                Some(name),
                (0..nodes.len())
                    .filter(|&i| takes_new_replicas(nodes[i].record))
                    .filter(|&i| plan.mismatch(&nodes[i]).is_none())
                    .collect(),
            );
        }
        match pass.best(plan, &eligible.1) {
            Some(i) => pass.take(i, plan, workload),
            None => counted_failed.push((plan, workload)),
        }
    }

    // Reasons, against the final usage: usage only grows within a pass, so what failed still
    // fails, and a placement fed back as `current` yields the same text (no event churn).
    for (plan, i, workload) in bound_failed {
        let node = &nodes[i];
        let fail = if node.record.ready {
            // Cannot be None: the node had no room earlier in the pass, and has less now.
            pass.room(i, plan).unwrap_or(Fail::InsufficientMemory)
        } else {
            Fail::NotReady
        };
        pass.placement
            .unschedulable
            .insert(workload, reasons::on_node(node.name, &fail));
    }
    let mut last: Option<(&str, String)> = None;
    for (plan, workload) in counted_failed {
        let reason = match &last {
            Some((dep, reason)) if *dep == plan.dep.name => reason.clone(),
            _ => {
                let fails = (0..nodes.len()).filter_map(|i| first_fail(&pass, plan, i));
                let reason = reasons::summarize(nodes.len(), fails);
                last = Some((plan.dep.name.as_str(), reason.clone()));
                reason
            }
        };
        pass.placement.unschedulable.insert(workload, reason);
    }
    pass.placement
}

/// The first check node `i` fails for a new replica of `plan`, in report order.
fn first_fail<'p>(pass: &Pass<'_>, plan: &'p Plan<'_>, i: usize) -> Option<Fail<'p>> {
    let node = &pass.nodes[i];
    if !node.record.ready {
        return Some(Fail::NotReady);
    }
    if node.record.scheduling != Scheduling::Enabled {
        return Some(Fail::Unschedulable);
    }
    plan.mismatch(node).or_else(|| pass.room(i, plan))
}

/// A node takes new replicas when Ready and schedulable (neither cordoned nor drained).
fn takes_new_replicas(node: &NodeRecord) -> bool {
    node.ready && node.scheduling == Scheduling::Enabled
}

/// A node keeps its replicas while Ready, and for a grace period after it disconnects (a
/// gateway rebooting must not cause a fleet-wide reshuffle), unless it is drained.
fn keeps_replicas(node: &NodeRecord, inputs: Inputs<'_>) -> bool {
    node.scheduling != Scheduling::Drained
        && (node.ready || inputs.now_ms.saturating_sub(node.since_ms) < inputs.not_ready_grace_ms)
}

#[cfg(test)]
mod props;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_semantics;
