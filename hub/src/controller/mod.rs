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
mod reports;
mod rollouts;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use wasmfleet_proto::{Hello, NodeStatus, WorkloadSpec, topic};

use crate::model::deployment::deployment_of_workload;
use crate::model::interned::Interned;
use crate::model::rollout::{RevisionRecord, RolloutPhase, change_cause};
use crate::model::{
    ApplyOutcome, ArtifactKey, ArtifactState, DeploymentRecord, DeploymentSpec, NodeDesired,
    NodeName, NodeRecord, code_for, deployment,
};
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
    /// Encoded frame (shared with the store's batch for desired states).
    pub payload: Bytes,
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
    // Records behind `Arc`s, shared with the readers' snapshot: a snapshot copies a pointer
    // per node, not its records (which were half of the hub's memory per node). The maps are
    // shared too, copied on write (`Arc::make_mut`): a snapshot costs three pointers, and a
    // map is copied only when it changes while a snapshot holds it, never kept twice when
    // nothing changed.
    nodes: Arc<BTreeMap<NodeName, Arc<NodeRecord>>>,
    /// The distinct announcements of the nodes, shared by their records.
    hellos: Interned<Hello>,
    /// What each node was last sent, its workloads sharing their templates.
    desired: Arc<BTreeMap<NodeName, Arc<NodeDesired>>>,
    /// The distinct workload templates the desired states hold.
    templates: Interned<WorkloadSpec>,
    statuses: Arc<BTreeMap<NodeName, Arc<NodeStatus>>>,
    /// Replaced whole by every pass, so shared with the snapshot too.
    placement: Arc<Placement>,
    /// When each node's desired state was last published and how long until it may be sent
    /// again, to pace re-sends; kept only until the node reports it (a converged fleet holds
    /// none: they were 1 in 15 of the hub's allocations per node at rest).
    sent: BTreeMap<NodeName, Sent>,
    /// Precompiled artifacts by module and engine profile.
    artifacts: BTreeMap<ArtifactKey, ArtifactState>,
    /// What replicas of Progressing rollouts reported at which revision.
    health: HashMap<String, rollouts::Health>,
    /// When each NotReady node's grace period ends, earliest first: the only time-driven
    /// input of placement, so a tick schedules only when one of these is due.
    deadlines: BTreeSet<(u64, NodeName)>,
    /// Nodes whose last report names another generation than their desired state: the
    /// only ones a tick looks at for re-sends.
    behind: BTreeSet<NodeName>,
    /// Scheduler passes run since load (for tests and benchmarks: events that change no
    /// node and ticks with nothing due run none).
    passes: u64,
}

/// How long a node may report an older generation than it was sent before the hub sends its
/// desired state again. A backstop for anything that reorders or loses a publish.
pub const LAGGING_RESEND_MS: u64 = 10_000;

/// The longest wait between re-sends to a node that stays behind. Each re-send doubles the
/// wait, from [`LAGGING_RESEND_MS`] up to this: a node that keeps not acting on a state (it
/// cannot decode it, or its reports queue behind a large apply) is not sent the same state
/// every 10 s for ever, while a lost publish is still repaired within 10 s. (A node reports
/// a state's generation as soon as it has read it, fetching or not, so a slow download does
/// not count as behind.)
pub const LAGGING_RESEND_MAX_MS: u64 = 80_000;

/// When a node's desired state last went out, and how long the hub waits for its report of
/// it before sending it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    at_ms: u64,
    wait_ms: u64,
}

impl Sent {
    /// A new desired state sent at `now_ms`: the first wait.
    fn fresh(now_ms: u64) -> Sent {
        Sent {
            at_ms: now_ms,
            wait_ms: LAGGING_RESEND_MS,
        }
    }

    /// Whether a node still behind at `now_ms` has waited long enough for a re-send.
    fn due(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.at_ms) >= self.wait_ms
    }

    /// The same state sent again at `now_ms`: the next wait is twice as long, up to
    /// [`LAGGING_RESEND_MAX_MS`].
    fn again(&self, now_ms: u64) -> Sent {
        Sent {
            at_ms: now_ms,
            wait_ms: self.wait_ms.saturating_mul(2).min(LAGGING_RESEND_MAX_MS),
        }
    }
}

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

/// `node`'s name as the nodes map holds it, shared; a name the hub has no record of gets a
/// copy of its own.
fn shared_name(nodes: &BTreeMap<NodeName, Arc<NodeRecord>>, node: &str) -> NodeName {
    nodes
        .get_key_value(node)
        .map_or_else(|| node.into(), |(k, _)| k.clone())
}

/// The publication of `node`'s desired state, recording when it was sent (the pacing of
/// [`Controller::tick`]'s re-sends to lagging nodes relies on every send being recorded).
/// A publication other than a re-send starts the pacing afresh.
fn desired_publish(
    sent: &mut BTreeMap<NodeName, Sent>,
    node: &NodeName,
    frame: Bytes,
    now_ms: u64,
) -> Publish {
    sent.insert(node.clone(), Sent::fresh(now_ms));
    desired_state(node, frame)
}

/// The publication of `node`'s desired state `frame`, unrecorded (for re-sends, which pace
/// themselves).
fn desired_state(node: &NodeName, frame: Bytes) -> Publish {
    Publish {
        topic: topic::node_topic(node, topic::NodeTopic::Desired),
        payload: frame,
        retain: true,
    }
}

impl Controller {
    /// Resumes from the store. Nodes start NotReady (their grace period starts now) until
    /// they announce themselves again, so a hub restart never reshuffles the fleet.
    pub fn load(store: Box<dyn Store>, config: Config, now_ms: u64) -> Result<Self, StoreError> {
        let snap = store.load()?;
        let mut hellos = Interned::default();
        let mut templates = Interned::default();
        let nodes = snap
            .nodes
            .into_iter()
            .map(|(name, mut n)| {
                if n.ready {
                    n.ready = false;
                    n.since_ms = now_ms;
                }
                n.hello = hellos.share(&n.hello);
                debug_assert_eq!(*n.name, *name);
                (n.name.clone(), Arc::new(n))
            })
            .collect::<BTreeMap<_, _>>();
        let desired = snap
            .desired
            .into_iter()
            .map(|(node, state)| {
                (
                    shared_name(&nodes, &node),
                    Arc::new(NodeDesired::from_wire(state, &mut templates)),
                )
            })
            .collect();
        let mut c = Controller {
            store,
            config,
            fleet: snap.fleet,
            version: 0,
            deployments: snap.deployments,
            nodes: Arc::new(nodes),
            hellos,
            desired: Arc::new(desired),
            templates,
            statuses: Arc::default(),
            placement: Arc::default(),
            sent: BTreeMap::new(),
            artifacts: snap.artifacts,
            health: HashMap::new(),
            deadlines: BTreeSet::new(),
            behind: BTreeSet::new(),
            passes: 0,
        };
        c.deadlines = c.nodes.values().filter_map(|n| c.deadline_of(n)).collect();
        c.placement = Arc::new(Placement {
            assigned: current_placement(&c.desired),
            ..Placement::default()
        });
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

    /// Scheduler passes since load.
    pub fn passes(&self) -> u64 {
        self.passes
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
        let result = self.reconcile_into(None, &mut batch, now_ms);
        if result.is_err() {
            self.artifacts = previous;
        }
        self.version += 1;
        result
    }

    /// Every node's desired state, to publish after (re)connecting to the broker: retained
    /// messages of an embedded broker live in memory only.
    pub fn republish_all(&mut self, now_ms: u64) -> Vec<Publish> {
        let sent = &mut self.sent;
        self.desired
            .iter()
            .map(|(node, state)| desired_publish(sent, node, state.frame(), now_ms))
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
        let mut publish = self.reconcile_into(Some(deployments), &mut batch, now_ms)?;
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
        self.reconcile_into(Some(deployments), &mut batch, now_ms)
    }

    /// What time alone changes: grace periods that ended (replicas of nodes NotReady too
    /// long move), rollout waves, re-sends to lagging nodes. Called every second; it costs
    /// next to nothing when none is due. Every other input of placement (deployments,
    /// nodes, artifacts) schedules when it changes, so a tick has no retries to make.
    pub fn tick(&mut self, now_ms: u64) -> Result<Vec<Publish>, ControllerError> {
        let mut publish = Vec::new();
        if self
            .deadlines
            .first()
            .is_some_and(|(due, _)| *due <= now_ms)
        {
            publish = self.reconcile_into(None, &mut Batch::default(), now_ms)?;
            while self
                .deadlines
                .first()
                .is_some_and(|(due, _)| *due <= now_ms)
            {
                self.deadlines.pop_first();
            }
        }
        publish.extend(self.step_rollouts(now_ms)?);
        publish.extend(self.resend_lagging(now_ms));
        if !self.health.is_empty() {
            let (placed, deployments) = (&self.placement.assigned, &self.deployments);
            self.health
                .retain(|w, _| placed.contains_key(w) && rollouts::progressing(deployments, w));
            if self.health.is_empty() {
                // A rollout of 10,000 replicas leaves a table of 10,000 slots behind.
                self.health.shrink_to_fit();
            }
        }
        Ok(publish)
    }

    /// Desired states of Ready nodes that report an older generation than they were sent,
    /// [`LAGGING_RESEND_MS`] after the send and then at doubling intervals (up to
    /// [`LAGGING_RESEND_MAX_MS`]) while the node stays behind. Looks only at the nodes known
    /// to be behind, so a converged fleet costs nothing here.
    fn resend_lagging(&mut self, now_ms: u64) -> Vec<Publish> {
        let mut out = Vec::new();
        let (desired, statuses, nodes, sent) =
            (&self.desired, &self.statuses, &self.nodes, &mut self.sent);
        self.behind.retain(|node| {
            let (Some(state), Some(status)) = (desired.get(node), statuses.get(node)) else {
                sent.remove(node);
                return false;
            };
            if (status.observed_fleet, status.observed_generation)
                == (state.fleet, state.generation)
            {
                sent.remove(node);
                return false;
            }
            let ready = nodes.get(node).is_some_and(|n| n.ready);
            // None: sent before this hub started (or its record lost); send now.
            let last = sent.get(node).copied();
            if ready && last.is_none_or(|s| s.due(now_ms)) {
                let next = last.map_or_else(|| Sent::fresh(now_ms), |s| s.again(now_ms));
                sent.insert(node.clone(), next);
                out.push(desired_state(node, state.frame()));
            }
            true
        });
        out
    }

    /// When `node`'s grace period ends, if it is NotReady.
    fn deadline_of(&self, node: &NodeRecord) -> Option<(u64, NodeName)> {
        (!node.ready).then(|| {
            (
                node.since_ms.saturating_add(self.config.not_ready_grace_ms),
                node.name.clone(),
            )
        })
    }

    /// Puts a node record in place, keeping [`Controller::deadlines`] in step; returns the
    /// record it replaced.
    fn put_node(&mut self, rec: Arc<NodeRecord>) -> Option<Arc<NodeRecord>> {
        let key = self.deadline_of(&rec);
        let old = Arc::make_mut(&mut self.nodes).insert(rec.name.clone(), rec);
        if let Some(k) = old.as_ref().and_then(|o| self.deadline_of(o)) {
            self.deadlines.remove(&k);
        }
        if let Some(k) = key {
            self.deadlines.insert(k);
        }
        old
    }

    /// Why the placement differs from what a pass would give now, if it does. A placement is
    /// allowed to lag only while a grace period is due and the next tick has not run. Tests
    /// check it after every step, since passes are skipped for changes that cannot move
    /// anything.
    #[cfg(test)]
    pub(crate) fn stale_placement(&self, now_ms: u64) -> Option<String> {
        if self
            .deadlines
            .first()
            .is_some_and(|(due, _)| *due <= now_ms)
        {
            return None;
        }
        let fresh = self.schedule(&self.deployments, now_ms);
        (fresh != *self.placement).then(|| {
            format!(
                "placement at {now_ms} ms is {:?}, a pass would give {:?}",
                self.placement, fresh
            )
        })
    }

    /// A scheduler pass over `deployments` and the nodes as they are in memory. It keeps the
    /// placement already sent stable (the desired states are derived from it).
    fn schedule(&self, deployments: &BTreeMap<String, DeploymentRecord>, now_ms: u64) -> Placement {
        scheduler::schedule(scheduler::Inputs {
            deployments,
            nodes: &self.nodes,
            current: &self.placement.assigned,
            now_ms,
            not_ready_grace_ms: self.config.not_ready_grace_ms,
        })
    }

    /// `node`'s name as the nodes map holds it (see [`shared_name`]).
    fn shared_name(&self, node: &str) -> NodeName {
        shared_name(&self.nodes, node)
    }

    /// Forgets a node record (undoing a batch that introduced it).
    fn remove_node(&mut self, node: &str) {
        if let Some(k) = Arc::make_mut(&mut self.nodes)
            .remove(node)
            .and_then(|o| self.deadline_of(&o))
        {
            self.deadlines.remove(&k);
        }
    }

    /// Drops old events beyond retention.
    pub fn trim(&mut self) -> Result<(), StoreError> {
        self.store.trim()
    }

    /// Runs the scheduler and reconciler against `deployments` (`None`: the current ones)
    /// and the nodes as they are in memory (records being committed in `batch` are already
    /// in place), commits `batch` plus every resulting desired state atomically, then adopts
    /// the new state. On a store error nothing but the node records changes in memory (their
    /// caller puts those back).
    fn reconcile_into(
        &mut self,
        deployments: Option<BTreeMap<String, DeploymentRecord>>,
        batch: &mut Batch,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        self.passes += 1;
        let deployments_now = deployments.as_ref().unwrap_or(&self.deployments);
        let placement = self.schedule(deployments_now, now_ms);
        let (nodes, artifacts) = (&self.nodes, &self.artifacts);
        let code = |node: &str, spec: &wasmfleet_proto::WorkloadSpec| match nodes.get(node) {
            Some(n) => code_for(artifacts, &spec.module.digest, &n.hello.engine),
            None => wasmfleet_proto::Code::Source,
        };
        let changed = node_desired_states(
            deployments_now,
            &placement,
            &self.desired,
            self.fleet,
            &code,
            &mut self.templates,
        )
        .map_err(|e| ControllerError::Invalid(e.to_string()))?;
        self.placement_events(&placement, now_ms, batch);
        // The wire form is built once, for the store and the publications alike.
        let first = batch.put_desired.len();
        batch
            .put_desired
            .extend(changed.iter().map(|(n, s)| (n.to_string(), s.frame())));
        let dirty = !batch.is_empty() || placement != *self.placement;
        self.store.commit(batch)?;
        if let Some(deployments) = deployments {
            self.deployments = deployments;
        }
        self.placement = Arc::new(placement);
        let sent = &mut self.sent;
        let publish = changed
            .keys()
            .zip(&batch.put_desired[first..])
            .map(|(node, (_, frame))| desired_publish(sent, node, frame.clone(), now_ms))
            .collect();
        for node in changed.keys() {
            if self.statuses.contains_key(node) {
                self.behind.insert(node.clone());
            }
        }
        Arc::make_mut(&mut self.desired).extend(
            changed
                .into_iter()
                .map(|(node, state)| (node, Arc::new(state))),
        );
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
