//! The controller: the hub's single writer.
//!
//! It owns the fleet state (deployments, nodes, per-node desired states, last reports), feeds
//! it to the pure scheduler and reconcilers, commits every resulting change to the store, and
//! only then hands back the MQTT publications (desired states are published after they are
//! durable, so a crash can never leave the broker ahead of the store). Every method takes the
//! time as a parameter; callers serialise access (one `Mutex`), so there is one writer.

mod handle;

use std::collections::BTreeMap;

use wasmfleet_proto::{DesiredState, LogBatch, NodeStatus, Presence, Stream, topic};

use crate::api::types::{ApplyOutcome, DeploymentView, NodeView};
use crate::model::{DeploymentRecord, DeploymentSpec, NodeRecord, WorkloadView, deployment};
use crate::reconcile::{current_placement, node_desired_states, workload_views};
use crate::scheduler::{self, Placement};
use crate::store::{Batch, Event, LogRecord, Store, StoreError};
pub use handle::ControllerHandle;

/// A message to publish on MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic.
    pub topic: String,
    /// Encoded frame.
    pub payload: Vec<u8>,
    /// Retain flag (desired states are retained).
    pub retain: bool,
}

/// Why a request to the controller failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The request is invalid; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How long a NotReady node keeps its workloads before they are rescheduled.
    pub not_ready_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            not_ready_grace_ms: 60_000,
        }
    }
}

/// The fleet state and its single writer.
pub struct Controller {
    store: Box<dyn Store>,
    config: Config,
    deployments: BTreeMap<String, DeploymentRecord>,
    nodes: BTreeMap<String, NodeRecord>,
    desired: BTreeMap<String, DesiredState>,
    statuses: BTreeMap<String, NodeStatus>,
    placement: Placement,
    /// When each node's desired state was last published, to pace re-sends.
    sent_ms: BTreeMap<String, u64>,
}

/// How long a node may report an older generation than it was sent before the hub sends its
/// desired state again. A backstop for anything that reorders or loses a publish.
pub const LAGGING_RESEND_MS: u64 = 10_000;

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("deployments", &self.deployments.len())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

fn event(now_ms: u64, kind: &str, object: &str, reason: &str, message: impl Into<String>) -> Event {
    Event {
        id: 0,
        ts_ms: now_ms,
        kind: kind.into(),
        object: object.into(),
        reason: reason.into(),
        message: message.into(),
    }
}

/// The publication of `node`'s desired state, recording when it was sent (the pacing of
/// [`Controller::tick`]'s re-sends to lagging nodes relies on every send being recorded).
fn desired_publish(
    sent_ms: &mut BTreeMap<String, u64>,
    node: &str,
    state: &DesiredState,
    now_ms: u64,
) -> Publish {
    sent_ms.insert(node.to_owned(), now_ms);
    Publish {
        topic: topic::node_topic(node, topic::NodeTopic::Desired),
        payload: wasmfleet_proto::encode(state),
        retain: true,
    }
}

impl Controller {
    /// Resumes from the store. Nodes start NotReady (their grace period starts now) until
    /// they announce themselves again, so a hub restart never reshuffles the fleet.
    pub fn load(store: Box<dyn Store>, config: Config, now_ms: u64) -> Result<Self, StoreError> {
        let snap = store.load()?;
        let nodes = snap
            .nodes
            .into_iter()
            .map(|(name, mut n)| {
                if n.ready {
                    n.ready = false;
                    n.since_ms = now_ms;
                }
                (name, n)
            })
            .collect();
        let mut c = Controller {
            store,
            config,
            deployments: snap.deployments,
            nodes,
            desired: snap.desired,
            statuses: BTreeMap::new(),
            placement: Placement::default(),
            sent_ms: BTreeMap::new(),
        };
        c.placement.assigned = current_placement(&c.desired);
        Ok(c)
    }

    /// Every node's desired state, to publish after (re)connecting to the broker: retained
    /// messages of an embedded broker live in memory only.
    pub fn republish_all(&mut self, now_ms: u64) -> Vec<Publish> {
        let sent_ms = &mut self.sent_ms;
        self.desired
            .iter()
            .map(|(node, state)| desired_publish(sent_ms, node, state, now_ms))
            .collect()
    }

    /// Creates or updates a deployment.
    pub fn apply(
        &mut self,
        name: &str,
        spec: DeploymentSpec,
        now_ms: u64,
    ) -> Result<(ApplyOutcome, u64, Vec<Publish>), ControllerError> {
        deployment::validate_name(name).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        spec.validate()
            .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        // One spelling per module (`sha256:` prefix, case), so re-applying the same module
        // written differently is not a template change that restarts every replica.
        let mut spec = spec;
        spec.module = spec
            .digest()
            .map_err(|e| ControllerError::Invalid(e.to_string()))?
            .to_hex();
        let (outcome, record) = match self.deployments.get(name) {
            Some(old) if old.spec == spec => {
                return Ok((ApplyOutcome::Unchanged, old.generation, vec![]));
            }
            Some(old) => {
                let revision = old.revision + u64::from(old.spec.template_differs(&spec));
                let rec = DeploymentRecord {
                    spec,
                    generation: old.generation + 1,
                    revision,
                    updated_ms: now_ms,
                    ..old.clone()
                };
                (ApplyOutcome::Configured, rec)
            }
            None => {
                let rec = DeploymentRecord {
                    name: name.into(),
                    spec,
                    generation: 1,
                    revision: 1,
                    created_ms: now_ms,
                    updated_ms: now_ms,
                };
                (ApplyOutcome::Created, rec)
            }
        };
        let generation = record.generation;
        let mut deployments = self.deployments.clone();
        deployments.insert(name.into(), record.clone());
        let reason = if outcome == ApplyOutcome::Created {
            "Created"
        } else {
            "Updated"
        };
        let mut batch = Batch {
            put_deployments: vec![record.clone()],
            events: vec![event(
                now_ms,
                "Deployment",
                name,
                reason,
                format!(
                    "generation {generation}, revision {}, {} replicas of module sha256:{}",
                    record.revision,
                    record.spec.replicas,
                    &record.spec.module[..12]
                ),
            )],
            ..Batch::default()
        };
        let publish = self.reconcile_into(deployments, &mut batch, now_ms)?;
        Ok((outcome, generation, publish))
    }

    /// Deletes a deployment; its instances are removed from every node's desired state.
    pub fn delete(&mut self, name: &str, now_ms: u64) -> Result<Vec<Publish>, ControllerError> {
        if !self.deployments.contains_key(name) {
            return Err(ControllerError::NotFound(format!(
                "deployment {name:?} not found"
            )));
        }
        let mut deployments = self.deployments.clone();
        deployments.remove(name);
        let mut batch = Batch {
            delete_deployments: vec![name.into()],
            events: vec![event(
                now_ms,
                "Deployment",
                name,
                "Deleted",
                "deployment deleted",
            )],
            ..Batch::default()
        };
        self.reconcile_into(deployments, &mut batch, now_ms)
    }

    /// Re-runs placement: time-based changes (grace periods) and retries of unschedulable
    /// replicas. Cheap and idempotent; called periodically.
    pub fn tick(&mut self, now_ms: u64) -> Result<Vec<Publish>, ControllerError> {
        let mut batch = Batch::default();
        let mut publish = self.reconcile_into(self.deployments.clone(), &mut batch, now_ms)?;
        publish.extend(self.resend_lagging(now_ms));
        Ok(publish)
    }

    /// Desired states of Ready nodes that report an older generation than they were sent,
    /// at most once per [`LAGGING_RESEND_MS`] per node.
    fn resend_lagging(&mut self, now_ms: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        for (node, state) in &self.desired {
            let ready = self.nodes.get(node).is_some_and(|n| n.ready);
            let observed = self.statuses.get(node).map(|s| s.observed_generation);
            let sent = self.sent_ms.get(node).copied().unwrap_or(0);
            if ready
                && observed.is_some_and(|g| g != state.generation)
                && now_ms.saturating_sub(sent) >= LAGGING_RESEND_MS
            {
                out.push(desired_publish(&mut self.sent_ms, node, state, now_ms));
            }
        }
        out
    }

    /// A node announced itself or went away.
    pub fn on_presence(
        &mut self,
        node: &str,
        presence: Presence,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let mut batch = Batch::default();
        match (presence, self.nodes.get(node)) {
            (Presence::Online(hello), old) => {
                let was_ready = old.is_some_and(|n| n.ready);
                let since_ms = if was_ready {
                    old.map_or(now_ms, |n| n.since_ms)
                } else {
                    now_ms
                };
                let rec = NodeRecord {
                    name: node.into(),
                    hello,
                    ready: true,
                    since_ms,
                };
                if old != Some(&rec) {
                    if !was_ready {
                        batch.events.push(event(
                            now_ms,
                            "Node",
                            node,
                            "NodeReady",
                            format!("agent {} connected", rec.hello.agent_version),
                        ));
                    }
                    batch.put_nodes.push(rec);
                }
            }
            (Presence::Offline, Some(old)) if old.ready => {
                let rec = NodeRecord {
                    ready: false,
                    since_ms: now_ms,
                    ..old.clone()
                };
                batch.events.push(event(
                    now_ms,
                    "Node",
                    node,
                    "NodeNotReady",
                    "agent disconnected",
                ));
                batch.put_nodes.push(rec);
            }
            (Presence::Offline, _) => return Ok(vec![]),
        }
        let mut publish = Vec::new();
        if let Some(rec) = batch.put_nodes.first().cloned() {
            let mut nodes = self.nodes.clone();
            nodes.insert(node.into(), rec);
            let old_nodes = std::mem::replace(&mut self.nodes, nodes);
            match self.reconcile_into(self.deployments.clone(), &mut batch, now_ms) {
                Ok(p) => publish = p,
                Err(e) => {
                    self.nodes = old_nodes;
                    return Err(e);
                }
            }
        }
        // A (re)connected node gets its desired state again even if nothing changed: it may
        // have missed it, and a retained message lost with a broker restart is not re-sent.
        // A node the hub holds nothing for gets an empty state, which stops whatever it still
        // runs from an earlier hub or a wiped store.
        if self.nodes.get(node).is_some_and(|n| n.ready)
            && !publish
                .iter()
                .any(|p| p.topic.contains(&format!("/n/{node}/")))
        {
            let state = self.desired.get(node).cloned().unwrap_or_default();
            publish.push(desired_publish(&mut self.sent_ms, node, &state, now_ms));
        }
        Ok(publish)
    }

    /// A node reported what it runs. Records phase changes as events.
    pub fn on_status(
        &mut self,
        node: &str,
        status: NodeStatus,
        now_ms: u64,
    ) -> Result<(), ControllerError> {
        let old = self.statuses.get(node);
        let mut batch = Batch::default();
        for w in &status.workloads {
            let before = old.and_then(|o| o.workloads.iter().find(|x| x.name == w.name));
            if before.map(|b| (b.phase, b.restarts, b.revision))
                != Some((w.phase, w.restarts, w.revision))
            {
                let mut msg = format!(
                    "{} on node {node} (revision {}, restarts {})",
                    w.phase.as_str(),
                    w.revision,
                    w.restarts
                );
                if !w.message.is_empty() {
                    msg = format!("{msg}: {}", w.message);
                }
                batch
                    .events
                    .push(event(now_ms, "Workload", &w.name, w.phase.as_str(), msg));
            }
        }
        self.store.commit(&batch)?;
        self.statuses.insert(node.into(), status);
        Ok(())
    }

    /// Stores log lines a node shipped.
    pub fn on_logs(&mut self, node: &str, batch: LogBatch) -> Result<(), ControllerError> {
        let records: Vec<LogRecord> = batch
            .lines
            .into_iter()
            .map(|l| LogRecord {
                id: 0,
                ts_ms: l.ts_ms,
                deployment: self.deployment_of(node, &l.workload),
                workload: l.workload,
                node: node.into(),
                stream: match l.stream {
                    Stream::Stdout => "stdout".into(),
                    Stream::Stderr => "stderr".into(),
                },
                line: l.line,
            })
            .collect();
        self.store.append_logs(&records)?;
        Ok(())
    }

    fn deployment_of(&self, node: &str, workload: &str) -> String {
        self.desired
            .get(node)
            .and_then(|s| s.workloads.iter().find(|w| w.name == workload))
            .map(|w| w.deployment.clone())
            .unwrap_or_else(|| {
                workload
                    .rsplit_once('-')
                    .map_or(workload, |(d, _)| d)
                    .to_owned()
            })
    }

    /// Drops old events and log lines beyond retention.
    pub fn trim(&mut self) -> Result<(), StoreError> {
        self.store.trim()
    }

    /// Runs the scheduler and reconciler against `deployments`, commits `batch` plus every
    /// resulting desired state atomically, then adopts the new state. On a store error
    /// nothing changes in memory.
    fn reconcile_into(
        &mut self,
        deployments: BTreeMap<String, DeploymentRecord>,
        batch: &mut Batch,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let placement = scheduler::schedule(scheduler::Inputs {
            deployments: &deployments,
            nodes: &self.nodes,
            current: &current_placement(&self.desired),
            now_ms,
            not_ready_grace_ms: self.config.not_ready_grace_ms,
        });
        let changed = node_desired_states(&deployments, &placement, &self.desired)
            .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        self.placement_events(&placement, now_ms, batch);
        batch
            .put_desired
            .extend(changed.iter().map(|(n, s)| (n.clone(), s.clone())));
        self.store.commit(batch)?;
        for rec in batch.put_nodes.drain(..) {
            self.nodes.insert(rec.name.clone(), rec);
        }
        self.deployments = deployments;
        self.placement = placement;
        let sent_ms = &mut self.sent_ms;
        let publish = changed
            .iter()
            .map(|(node, state)| desired_publish(sent_ms, node, state, now_ms))
            .collect();
        self.desired.extend(changed);
        Ok(publish)
    }

    fn placement_events(&self, placement: &Placement, now_ms: u64, batch: &mut Batch) {
        for (workload, node) in &placement.assigned {
            if self.placement.assigned.get(workload) != Some(node) {
                batch.events.push(event(
                    now_ms,
                    "Workload",
                    workload,
                    "Scheduled",
                    format!("assigned to node {node}"),
                ));
            }
        }
        for (workload, reason) in &placement.unschedulable {
            if self.placement.unschedulable.get(workload) != Some(reason) {
                batch.events.push(event(
                    now_ms,
                    "Workload",
                    workload,
                    "FailedScheduling",
                    reason.clone(),
                ));
            }
        }
    }

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
                    .map_or(0, |s| s.observed_generation),
            })
            .collect()
    }

    /// `get workloads`, optionally for one deployment.
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

    /// Events, optionally for one object.
    pub fn events(
        &self,
        object: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.store.events(object, limit)
    }

    /// Events of a deployment and of its workloads, oldest first.
    pub fn deployment_events(&self, name: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut all = self.store.events(Some(("Deployment", name)), limit)?;
        let prefix = format!("{name}-");
        for ev in self.store.events(None, 2_000)? {
            if ev.kind == "Workload"
                && ev
                    .object
                    .strip_prefix(&prefix)
                    .is_some_and(|o| o.parse::<u32>().is_ok())
            {
                all.push(ev);
            }
        }
        all.sort_by_key(|e| e.id);
        let skip = all.len().saturating_sub(limit as usize);
        Ok(all.split_off(skip))
    }

    /// Log lines of a deployment.
    pub fn logs(
        &self,
        deployment: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogRecord>, StoreError> {
        self.store.logs(deployment, after, limit)
    }

    /// Whether a deployment exists.
    pub fn has_deployment(&self, name: &str) -> bool {
        self.deployments.contains_key(name)
    }
}

#[cfg(test)]
mod tests;
