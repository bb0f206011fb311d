//! The controller: the hub's single writer.
//!
//! It owns the fleet state (deployments, nodes, per-node desired states, last reports), feeds
//! it to the pure scheduler and reconcilers, commits every resulting change to the store, and
//! only then hands back the MQTT publications (desired states are published after they are
//! durable, so a crash can never leave the broker ahead of the store). Every method takes the
//! time as a parameter; callers serialise access (one `Mutex`, in [`ControllerHandle`]), so
//! there is one writer. Readers never take that lock: they read a [`FleetSnapshot`].

pub mod handle;
mod outbox;
mod rollouts;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wasmfleet_proto::{DesiredState, MISSED_HEARTBEATS, NodeStatus, Presence, topic};

use crate::model::deployment::deployment_of_workload;
use crate::model::rollout::{RevisionRecord, RolloutPhase, change_cause};
use crate::model::{
    ApplyOutcome, ArtifactKey, ArtifactState, DeploymentRecord, DeploymentSpec, NodeRecord,
    Scheduling, code_for, deployment,
};
use crate::reconcile::liveness::Flip;
use crate::reconcile::{current_placement, node_desired_states};
use crate::scheduler::{self, Placement};
use crate::store::{Batch, Event, Store, StoreError};
pub use handle::ControllerHandle;
pub use outbox::Outbox;
pub use snapshot::FleetSnapshot;

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

/// Most nodes the hub keeps records of: presence from further names is ignored (a client
/// inventing node names must not grow the hub without bound).
pub const MAX_NODES: usize = 100_000;

/// The fleet state and its single writer.
pub struct Controller {
    store: Box<dyn Store>,
    config: Config,
    fleet: u64,
    /// Bumped by every change a reader could see, so snapshots are rebuilt only when stale.
    version: u64,
    deployments: BTreeMap<String, DeploymentRecord>,
    nodes: BTreeMap<String, NodeRecord>,
    desired: BTreeMap<String, DesiredState>,
    statuses: BTreeMap<String, NodeStatus>,
    placement: Placement,
    /// When each node's desired state was last published, to pace re-sends.
    sent_ms: BTreeMap<String, u64>,
    /// Precompiled artifacts by module and engine profile.
    artifacts: BTreeMap<ArtifactKey, ArtifactState>,
    /// Nodes NotReady because their heartbeats stopped (not because they said goodbye): the
    /// next beat makes them Ready again.
    silent: BTreeSet<String>,
    /// What replicas reported at which revision, for rollouts.
    health: HashMap<String, rollouts::Health>,
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
    let deployment = match kind {
        "Deployment" => Some(object.to_owned()),
        "Workload" => Some(deployment_of_workload(object).to_owned()),
        _ => None,
    };
    Event {
        id: 0,
        ts_ms: now_ms,
        kind: kind.into(),
        object: object.into(),
        reason: reason.into(),
        message: message.into(),
        deployment,
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
            fleet: snap.fleet,
            version: 0,
            deployments: snap.deployments,
            nodes,
            desired: snap.desired,
            statuses: BTreeMap::new(),
            placement: Placement::default(),
            sent_ms: BTreeMap::new(),
            artifacts: snap.artifacts,
            silent: BTreeSet::new(),
            health: HashMap::new(),
        };
        c.placement.assigned = current_placement(&c.desired);
        // Replica health lives in memory: a wave in progress starts its clock again, or a hub
        // that was down longer than the deadline would roll back healthy rollouts.
        for d in c.deployments.values_mut() {
            if let Some(r) = d
                .rollout
                .as_mut()
                .filter(|r| r.phase == RolloutPhase::Progressing)
            {
                r.wave_started_ms = now_ms;
            }
        }
        Ok(c)
    }

    /// Identity of the fleet store, carried by every desired state.
    pub fn fleet(&self) -> u64 {
        self.fleet
    }

    /// Changes since load; equal versions mean equal snapshots.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A copy of what readers may see.
    pub fn snapshot(&self) -> FleetSnapshot {
        FleetSnapshot {
            version: self.version,
            fleet: self.fleet,
            deployments: self.deployments.clone(),
            nodes: self.nodes.clone(),
            desired: self.desired.clone(),
            statuses: self.statuses.clone(),
            placement: self.placement.clone(),
            artifacts: self.artifacts.clone(),
        }
    }

    /// Records artifacts the hub compiled (or could not) and sends nodes waiting for them
    /// their new desired states.
    pub fn record_artifacts(
        &mut self,
        artifacts: Vec<(ArtifactKey, ArtifactState)>,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let fresh: Vec<_> = artifacts
            .into_iter()
            .filter(|(k, v)| self.artifacts.get(k) != Some(v))
            .collect();
        if fresh.is_empty() {
            return Ok(vec![]);
        }
        let mut batch = Batch {
            put_artifacts: fresh.clone(),
            ..Batch::default()
        };
        for ((module, profile), state) in &fresh {
            if let ArtifactState::Unavailable { reason } | ArtifactState::Failed { reason } = state
            {
                batch.events.push(event(
                    now_ms,
                    "Module",
                    &module.to_hex(),
                    "CompileSkipped",
                    format!("no artifact for {profile}; nodes get the source module: {reason}"),
                ));
            }
        }
        // Persisted with the reconcile pass below, which reads the new table.
        let mut next = self.artifacts.clone();
        next.extend(fresh);
        let previous = std::mem::replace(&mut self.artifacts, next);
        let result = self.reconcile_into(self.deployments.clone(), &mut batch, now_ms);
        if result.is_err() {
            self.artifacts = previous;
        }
        self.version += 1;
        result
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
        self.apply_with_cause(name, spec, None, now_ms)
    }

    /// [`Controller::apply`], saying why a new revision came to be (`rollout undo`); by
    /// default the history says what changed.
    pub fn apply_with_cause(
        &mut self,
        name: &str,
        spec: DeploymentSpec,
        cause: Option<String>,
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
                let new_template = old.spec.template_differs(&spec);
                let revision = old.revision + u64::from(new_template);
                let mut rec = DeploymentRecord {
                    spec,
                    generation: old.generation + 1,
                    revision,
                    updated_ms: now_ms,
                    ..old.clone()
                };
                if new_template {
                    if old.history.iter().all(|h| h.revision != old.revision) {
                        // A record from before rollouts: its revision becomes the stable one.
                        rec.history.push(RevisionRecord {
                            revision: old.revision,
                            spec: old.spec.clone(),
                            cause: "(from before revision history)".into(),
                            created_ms: old.updated_ms,
                        });
                    }
                    rec.rollout = Some(rollouts::start(Some(old), revision, now_ms));
                    let cause = cause.unwrap_or_else(|| change_cause(&old.spec, &rec.spec));
                    rec.push_history(RevisionRecord {
                        revision,
                        spec: rec.spec.clone(),
                        cause,
                        created_ms: now_ms,
                    });
                }
                (ApplyOutcome::Configured, rec)
            }
            None => {
                let mut rec = DeploymentRecord {
                    name: name.into(),
                    spec,
                    generation: 1,
                    revision: 1,
                    created_ms: now_ms,
                    updated_ms: now_ms,
                    rollout: Some(rollouts::start(None, 1, now_ms)),
                    history: vec![],
                };
                rec.push_history(RevisionRecord {
                    revision: 1,
                    spec: rec.spec.clone(),
                    cause: cause.unwrap_or_else(|| "created".into()),
                    created_ms: now_ms,
                });
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
                    "generation {generation}, revision {}, {} of module sha256:{}",
                    record.revision,
                    record.replicas_text(),
                    &record.spec.module[..12]
                ),
            )],
            ..Batch::default()
        };
        let mut publish = self.reconcile_into(deployments, &mut batch, now_ms)?;
        // The rollout's first replicas switch now, not at the next tick.
        publish.extend(self.step_rollouts(now_ms)?);
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
        publish.extend(self.step_rollouts(now_ms)?);
        publish.extend(self.resend_lagging(now_ms));
        let placed = &self.placement.assigned;
        self.health.retain(|w, _| placed.contains_key(w));
        Ok(publish)
    }

    /// Desired states of Ready nodes that report an older generation than they were sent,
    /// at most once per [`LAGGING_RESEND_MS`] per node.
    fn resend_lagging(&mut self, now_ms: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        for (node, state) in &self.desired {
            let ready = self.nodes.get(node).is_some_and(|n| n.ready);
            let observed = self
                .statuses
                .get(node)
                .map(|s| (s.observed_fleet, s.observed_generation));
            let sent = self.sent_ms.get(node).copied().unwrap_or(0);
            if ready
                && observed.is_some_and(|o| o != (state.fleet, state.generation))
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
        self.silent.remove(node);
        if !self.nodes.contains_key(node) && self.nodes.len() >= MAX_NODES {
            tracing::warn!(%node, "ignoring a new node: the hub already knows {MAX_NODES}");
            return Ok(vec![]);
        }
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
                    created_ms: old.map_or(now_ms, |n| n.created_ms),
                    scheduling: old.map_or(Scheduling::Enabled, |n| n.scheduling),
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
        self.commit_node_change(node, batch, now_ms)
    }

    /// A node's heartbeats stopped, or resumed after a silence. Silence makes a Ready node
    /// NotReady (its grace period starts); a beat makes a node Ready again only if silence is
    /// what made it NotReady (one that said `Offline` announces itself with `Online`).
    pub fn on_liveness(
        &mut self,
        flip: &Flip,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let node = flip.node.as_str();
        let Some(old) = self.nodes.get(node) else {
            return Ok(vec![]);
        };
        let silent_s = now_ms.saturating_sub(flip.last_seen_ms) as f64 / 1000.0;
        let (rec, reason, message) = match (flip.alive, old.ready) {
            (false, true) => {
                self.silent.insert(node.to_owned());
                (
                    false,
                    "NodeNotReady",
                    format!(
                        "no heartbeat for {silent_s:.1} s ({MISSED_HEARTBEATS} intervals missed)"
                    ),
                )
            }
            (true, false) if self.silent.remove(node) => {
                (true, "NodeReady", "heartbeats resumed".to_string())
            }
            _ => return Ok(vec![]),
        };
        let rec = NodeRecord {
            ready: rec,
            since_ms: now_ms,
            ..old.clone()
        };
        let batch = Batch {
            events: vec![event(now_ms, "Node", node, reason, message)],
            put_nodes: vec![rec],
            ..Batch::default()
        };
        self.commit_node_change(node, batch, now_ms)
    }

    /// Cordons, drains or uncordons `node` (`wasmfleet cordon|drain|uncordon`). Returns the
    /// workloads that left it (a drain moves its replicas elsewhere, or leaves them Pending
    /// with a reason when no node can take them).
    pub fn set_scheduling(
        &mut self,
        node: &str,
        scheduling: Scheduling,
        now_ms: u64,
    ) -> Result<(Vec<String>, Vec<Publish>), ControllerError> {
        let Some(old) = self.nodes.get(node) else {
            return Err(ControllerError::NotFound(format!(
                "node {node:?} not found"
            )));
        };
        if old.scheduling == scheduling {
            return Ok((vec![], vec![]));
        }
        let (reason, message) = match scheduling {
            Scheduling::Enabled => ("NodeSchedulable", "uncordoned: new replicas may land here"),
            Scheduling::Cordoned => ("NodeNotSchedulable", "cordoned: no new replicas"),
            Scheduling::Drained => (
                "NodeDrained",
                "drained: no new replicas, its replicas move elsewhere",
            ),
        };
        let batch = Batch {
            events: vec![event(now_ms, "Node", node, reason, message)],
            put_nodes: vec![NodeRecord {
                scheduling,
                ..old.clone()
            }],
            ..Batch::default()
        };
        let held = |c: &Controller| -> BTreeSet<String> {
            c.placement
                .assigned
                .iter()
                .filter(|(_, n)| n.as_str() == node)
                .map(|(w, _)| w.clone())
                .collect()
        };
        let before = held(self);
        let publish = self.commit_node_change(node, batch, now_ms)?;
        let after = held(self);
        Ok((before.difference(&after).cloned().collect(), publish))
    }

    /// Commits a change of one node's record (in `batch.put_nodes`, if any) with the placement
    /// it causes, and sends a Ready node its desired state.
    fn commit_node_change(
        &mut self,
        node: &str,
        mut batch: Batch,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
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
            let state = self.desired.get(node).cloned().unwrap_or(DesiredState {
                fleet: self.fleet,
                ..DesiredState::default()
            });
            publish.push(desired_publish(&mut self.sent_ms, node, &state, now_ms));
        }
        self.version += 1;
        Ok(publish)
    }

    /// A node reported what it runs. Records phase changes as events. Reports of nodes the
    /// hub has no record of are ignored (they announce themselves first; a stray retained
    /// status of a long-gone node must not be kept forever).
    ///
    /// A node that acted on a generation of this fleet newer than any the hub holds for it
    /// (the store was restored from a backup) would ignore everything the hub sends as stale:
    /// its desired state is re-issued above what the node reports.
    pub fn on_status(
        &mut self,
        node: &str,
        status: NodeStatus,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        if !self.nodes.contains_key(node) {
            tracing::debug!(%node, "ignoring the status of an unknown node");
            return Ok(vec![]);
        }
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
        let held = self.desired.get(node).map_or(0, |d| d.generation);
        let mut reissued = None;
        if status.observed_fleet == self.fleet && status.observed_generation > held {
            let mut state = self.desired.get(node).cloned().unwrap_or(DesiredState {
                fleet: self.fleet,
                ..DesiredState::default()
            });
            state.generation = status.observed_generation + 1;
            batch.events.push(event(
                now_ms,
                "Node",
                node,
                "GenerationReissued",
                format!(
                    "node acted on generation {} but the store holds {held}; re-issued as {}",
                    status.observed_generation, state.generation
                ),
            ));
            batch.put_desired.push((node.to_owned(), state.clone()));
            reissued = Some(state);
        }
        self.store.commit(&batch)?;
        if status.observed_fleet == self.fleet {
            rollouts::observe(&mut self.health, node, &self.placement, &status, now_ms);
        }
        if self.statuses.get(node) != Some(&status) {
            self.statuses.insert(node.into(), status);
            self.version += 1;
        }
        let mut publish = vec![];
        if let Some(state) = reissued {
            publish.push(desired_publish(&mut self.sent_ms, node, &state, now_ms));
            self.desired.insert(node.to_owned(), state);
        }
        Ok(publish)
    }

    /// Drops old events beyond retention.
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
        let (nodes, artifacts, put_nodes) = (&self.nodes, &self.artifacts, &batch.put_nodes);
        let code = |node: &str, spec: &wasmfleet_proto::WorkloadSpec| {
            // The node's latest announcement, including one being recorded in this pass.
            let record = put_nodes
                .iter()
                .find(|n| n.name == node)
                .or(nodes.get(node));
            match record {
                Some(n) => code_for(artifacts, &spec.module.digest, &n.hello.engine),
                None => wasmfleet_proto::Code::Source,
            }
        };
        let changed =
            node_desired_states(&deployments, &placement, &self.desired, self.fleet, &code)
                .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        self.placement_events(&placement, now_ms, batch);
        batch
            .put_desired
            .extend(changed.iter().map(|(n, s)| (n.clone(), s.clone())));
        let dirty = !batch.is_empty() || placement != self.placement;
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
        if dirty {
            self.version += 1;
        }
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
}

#[cfg(test)]
mod tests;
