//! What readers see: a copy of the fleet state taken after changes, so listing nodes,
//! deployments and workloads never waits for the controller (whose lock is held across store
//! writes and scheduling).

use std::collections::BTreeMap;

use wasmfleet_proto::{DesiredState, NodeStatus};

use crate::model::{
    ArtifactKey, ArtifactState, DeploymentRecord, DeploymentView, NodeRecord, NodeView,
    WorkloadView,
};
use crate::reconcile::workload_views;
use crate::scheduler::Placement;

/// The fleet state at one [`version`](FleetSnapshot::version) of the controller.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// The controller's version this copy was taken at.
    pub version: u64,
    /// Fleet identity.
    pub fleet: u64,
    /// Deployments by name.
    pub deployments: BTreeMap<String, DeploymentRecord>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// The last desired state sent to each node.
    pub desired: BTreeMap<String, DesiredState>,
    /// The last status each node reported.
    pub statuses: BTreeMap<String, NodeStatus>,
    /// Where every replica goes.
    pub placement: Placement,
    /// Precompiled artifacts by module and engine profile.
    pub artifacts: BTreeMap<ArtifactKey, ArtifactState>,
}

impl FleetSnapshot {
    /// `get nodes`.
    pub fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .values()
            .map(|n| NodeView {
                name: n.name.clone(),
                status: if n.ready { "Ready" } else { "NotReady" }.into(),
                since_ms: n.since_ms,
                agent_version: n.hello.agent_version.clone(),
                device_class: format!("{:?}", n.hello.device_class),
                memory_bytes: n.hello.capacity.memory_bytes,
                max_workloads: n.hello.capacity.max_workloads,
                labels: n
                    .hello
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect(),
                workloads: self.desired.get(&n.name).map_or(0, |s| s.workloads.len()),
                desired_generation: self.desired.get(&n.name).map_or(0, |s| s.generation),
                observed_generation: self
                    .statuses
                    .get(&n.name)
                    .filter(|s| s.observed_fleet == self.fleet)
                    .map_or(0, |s| s.observed_generation),
                engine: crate::model::profile_key(&n.hello.engine),
                compiler: n.hello.engine.compiler,
                devices: n.hello.devices.clone(),
            })
            .collect()
    }

    /// `get workloads`, optionally of one deployment.
    pub fn workload_views(&self, deployment: Option<&str>) -> Vec<WorkloadView> {
        let mut views = workload_views(
            &self.deployments,
            &self.placement,
            &self.nodes,
            &self.statuses,
        );
        if let Some(d) = deployment {
            views.retain(|w| w.deployment == d);
        }
        views
    }

    /// `get deployments`.
    pub fn deployment_views(&self) -> Vec<DeploymentView> {
        let workloads = self.workload_views(None);
        self.deployments
            .values()
            .map(|d| {
                let mine = workloads.iter().filter(|w| w.deployment == d.name);
                let ready = mine.clone().filter(|w| w.phase == "Running").count() as u32;
                let scheduled = mine.filter(|w| w.node.is_some()).count() as u32;
                DeploymentView {
                    name: d.name.clone(),
                    spec: d.spec.clone(),
                    generation: d.generation,
                    revision: d.revision,
                    ready_replicas: ready,
                    scheduled_replicas: scheduled,
                    created_ms: d.created_ms,
                }
            })
            .collect()
    }

    /// The deployment `workload` on `node` belongs to, if it is placed there.
    pub fn deployment_on(&self, node: &str, workload: &str) -> Option<&str> {
        self.desired
            .get(node)?
            .workloads
            .iter()
            .find(|w| w.name == workload)
            .map(|w| w.deployment.as_str())
    }
}
