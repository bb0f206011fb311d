//! What readers see: a copy of the fleet state taken after changes, so listing nodes,
//! deployments and workloads never waits for the controller (whose lock is held across store
//! writes and scheduling).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmfleet_proto::{NodeStatus, Phase};

use crate::api::types::{RevisionView, RolloutView};

use crate::model::{
    ArtifactKey, ArtifactState, DeploymentRecord, DeploymentView, NodeDesired, NodeName,
    NodeRecord, NodeView, Scheduling, WorkloadView,
};
use crate::reconcile::workload_views;
use crate::scheduler::Placement;

/// The fleet state at one [`version`](FleetSnapshot::version) of the controller. Node
/// records, desired states and statuses are shared with the controller (a change replaces a
/// record, never edits one in place), so a snapshot costs a pointer per node and record.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// The controller's version this copy was taken at.
    pub version: u64,
    /// Fleet identity.
    pub fleet: u64,
    /// Deployments by name.
    pub deployments: BTreeMap<String, DeploymentRecord>,
    /// Nodes by name.
    pub nodes: Arc<BTreeMap<NodeName, Arc<NodeRecord>>>,
    /// The last desired state sent to each node.
    pub desired: Arc<BTreeMap<NodeName, Arc<NodeDesired>>>,
    /// The last status each node reported.
    pub statuses: Arc<BTreeMap<NodeName, Arc<NodeStatus>>>,
    /// Where every replica goes.
    pub placement: Arc<Placement>,
    /// Precompiled artifacts by module and engine profile.
    pub artifacts: BTreeMap<ArtifactKey, ArtifactState>,
}

impl FleetSnapshot {
    /// `get nodes`.
    pub fn node_views(&self, last_seen: impl Fn(&str) -> Option<u64>) -> Vec<NodeView> {
        self.nodes
            .values()
            .map(|n| NodeView {
                name: n.name.to_string(),
                status: format!(
                    "{}{}",
                    if n.ready { "Ready" } else { "NotReady" },
                    match n.scheduling {
                        Scheduling::Enabled => "",
                        Scheduling::Cordoned | Scheduling::Drained => ",SchedulingDisabled",
                    }
                ),
                since_ms: n.since_ms,
                created_ms: n.created_ms,
                last_seen_ms: last_seen(&n.name),
                scheduling: n.scheduling.as_str().into(),
                allocated_memory_bytes: self.desired.get(&n.name).map_or(0, |s| s.memory_bytes()),
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
                let desired = mine.clone().count() as u32;
                let ready = mine.clone().filter(|w| w.phase == "Running").count() as u32;
                let scheduled = mine.filter(|w| w.node.is_some()).count() as u32;
                DeploymentView {
                    name: d.name.clone(),
                    spec: d.spec.clone(),
                    generation: d.generation,
                    revision: d.revision,
                    desired_replicas: desired,
                    ready_replicas: ready,
                    scheduled_replicas: scheduled,
                    created_ms: d.created_ms,
                }
            })
            .collect()
    }

    /// `rollout status`: where the rollout of `name`'s revision stands.
    pub fn rollout_view(&self, name: &str) -> Option<RolloutView> {
        let d = self.deployments.get(name)?;
        let names = self.placement.workloads_of(d);
        let replicas = u32::try_from(names.len()).unwrap_or(u32::MAX);
        let (phase, stable, wave, updated, message) = match &d.rollout {
            Some(r) => (
                r.phase.as_str().to_string(),
                r.stable,
                r.wave + 1,
                (0..replicas).filter(|i| r.runs_new(*i)).count() as u32,
                r.message.clone(),
            ),
            None => ("Complete".to_string(), None, 1, replicas, String::new()),
        };
        let ready = names
            .iter()
            .filter(|w| {
                let Some(node) = self.placement.assigned.get(*w) else {
                    return false;
                };
                self.statuses
                    .get(node)
                    .filter(|s| s.observed_fleet == self.fleet)
                    .and_then(|s| s.workloads.iter().find(|x| &x.name == *w))
                    .is_some_and(|x| {
                        x.revision == d.revision
                            && matches!(x.phase, Phase::Running | Phase::Succeeded)
                    })
            })
            .count() as u32;
        Some(RolloutView {
            deployment: d.name.clone(),
            revision: d.revision,
            stable,
            phase,
            wave,
            waves: u32::try_from(d.spec.rollout.waves.len()).unwrap_or(1),
            replicas,
            updated,
            ready,
            message,
        })
    }

    /// `rollout history`: the revisions kept, oldest first.
    pub fn revision_views(&self, name: &str) -> Option<Vec<RevisionView>> {
        let d = self.deployments.get(name)?;
        let stable = d.rollout.as_ref().and_then(|r| r.stable);
        Some(
            d.history
                .iter()
                .map(|h| RevisionView {
                    revision: h.revision,
                    cause: h.cause.clone(),
                    created_ms: h.created_ms,
                    current: h.revision == d.revision,
                    stable: Some(h.revision) == stable,
                })
                .collect(),
        )
    }

    /// The deployment `workload` on `node` belongs to, if it is placed there.
    pub fn deployment_on(&self, node: &str, workload: &str) -> Option<&str> {
        self.desired
            .get(node)?
            .workloads
            .iter()
            .find(|w| &*w.name == workload)
            .map(|w| w.template.deployment.as_str())
    }
}
