//! What nodes report (presence, heartbeat flips, statuses) and what operators change about
//! nodes (cordon, drain), folded into the fleet state a batch at a time.
//!
//! A connect storm of 10,000 nodes arrives as thousands of presence messages within seconds.
//! Each one changes a node record, and a changed node may change placement, but scheduling
//! and committing after every one of them made the storm quadratic. So changes are *staged*:
//! node records are updated in place (the old ones kept to restore if the commit fails),
//! events and reissued desired states gather in one [`Batch`], and [`Controller::on_fleet`]
//! ends a drained inbox with one scheduler pass and one store transaction. The single-report
//! methods ([`Controller::on_presence`] and the others) are a batch of one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use wasmfleet_proto::{MISSED_HEARTBEATS, NodeStatus, Presence, topic};

use super::{Controller, ControllerError, MAX_NODES, Publish, desired_publish, event, rollouts};
use crate::model::{NodeDesired, NodeName, NodeRecord, Scheduling};
use crate::mqtt::FleetMessage;
use crate::reconcile::liveness::Flip;
use crate::scheduler;
use crate::store::Batch;

/// Changes staged by a batch of reports, not yet committed.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Events, node records and reissued desired states to commit together.
    batch: Batch,
    /// Nodes whose desired state goes out after the commit (if they are still Ready then):
    /// a (re)connected node may have missed it, and a retained message lost with a broker
    /// restart is not re-sent by the broker.
    greet: BTreeSet<NodeName>,
    /// A node record changed in a way placement may answer ([`scheduler::node_change_may_move`]).
    reschedule: bool,
    /// Node records before this batch changed them (`None`: the node was new).
    old_nodes: HashMap<NodeName, Option<Arc<NodeRecord>>>,
    /// Desired states before this batch reissued them.
    old_desired: HashMap<NodeName, Option<Arc<NodeDesired>>>,
}

impl Controller {
    /// Folds a drained inbox into the fleet state: every report is staged, then one scheduler
    /// pass (only if a node record changed) and one store transaction commit them all. On a
    /// store error nothing of the batch is kept but the statuses, which record what nodes
    /// said (their events are lost with the transaction).
    pub fn on_fleet(
        &mut self,
        messages: impl IntoIterator<Item = FleetMessage>,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let mut pending = Pending::default();
        let mut publish = Vec::new();
        for m in messages {
            match m {
                FleetMessage::Connected => publish.extend(self.republish_all(now_ms)),
                FleetMessage::Presence(node, p) => {
                    self.stage_presence(&mut pending, &node, p, now_ms)
                }
                FleetMessage::Status(node, s) => self.stage_status(&mut pending, &node, s, now_ms),
                FleetMessage::Liveness(flip) => self.stage_liveness(&mut pending, &flip, now_ms),
            }
        }
        publish.extend(self.flush(pending, now_ms)?);
        Ok(publish)
    }

    /// A node announced itself or went away.
    pub fn on_presence(
        &mut self,
        node: &str,
        presence: Presence,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let mut pending = Pending::default();
        self.stage_presence(&mut pending, node, presence, now_ms);
        self.flush(pending, now_ms)
    }

    /// A node's heartbeats stopped, or resumed after a silence. Silence makes a Ready node
    /// NotReady (its grace period starts); a beat makes a node Ready again only if the hub
    /// holds its announcement ([`Flip::announced`]: one that said `Offline` announces itself
    /// with `Online`). Flips may repeat (the hub restates them, [`Liveness::restate`]): one
    /// that changes nothing is nothing.
    ///
    /// [`Liveness::restate`]: crate::reconcile::liveness::Liveness::restate
    pub fn on_liveness(
        &mut self,
        flip: &Flip,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let mut pending = Pending::default();
        self.stage_liveness(&mut pending, flip, now_ms);
        self.flush(pending, now_ms)
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
        let mut pending = Pending::default();
        self.stage_status(&mut pending, node, status, now_ms);
        self.flush(pending, now_ms)
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
        let rec = NodeRecord {
            scheduling,
            ..NodeRecord::clone(old)
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
        let mut pending = Pending::default();
        pending
            .batch
            .events
            .push(event(now_ms, "Node", node, reason, message));
        self.stage_node(&mut pending, rec);
        let publish = self.flush(pending, now_ms)?;
        let after = held(self);
        Ok((before.difference(&after).cloned().collect(), publish))
    }

    fn stage_presence(&mut self, p: &mut Pending, node: &str, presence: Presence, now_ms: u64) {
        if !self.nodes.contains_key(node) && self.nodes.len() >= MAX_NODES {
            tracing::warn!(%node, "ignoring a new node: the hub already knows {MAX_NODES}");
            return;
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
                    hello: self.hellos.intern(hello),
                    ready: true,
                    since_ms,
                    created_ms: old.map_or(now_ms, |n| n.created_ms),
                    scheduling: old.map_or(Scheduling::Enabled, |n| n.scheduling),
                };
                if old.map(|o| &**o) != Some(&rec) {
                    if !was_ready {
                        p.batch.events.push(event(
                            now_ms,
                            "Node",
                            node,
                            "NodeReady",
                            format!("agent {} connected", rec.hello.agent_version),
                        ));
                    }
                    self.stage_node(p, rec);
                }
                p.greet.insert(self.shared_name(node));
            }
            (Presence::Offline, Some(old)) if old.ready => {
                let rec = NodeRecord {
                    ready: false,
                    since_ms: now_ms,
                    ..NodeRecord::clone(old)
                };
                p.batch.events.push(event(
                    now_ms,
                    "Node",
                    node,
                    "NodeNotReady",
                    "agent disconnected",
                ));
                self.stage_node(p, rec);
            }
            (Presence::Offline, _) => {}
        }
    }

    fn stage_liveness(&mut self, p: &mut Pending, flip: &Flip, now_ms: u64) {
        let node = flip.node.as_str();
        let Some(old) = self.nodes.get(node) else {
            return;
        };
        let silent_s = now_ms.saturating_sub(flip.last_seen_ms) as f64 / 1000.0;
        let (ready, reason, message) = match (flip.alive, old.ready) {
            (false, true) => (
                false,
                "NodeNotReady",
                format!("no heartbeat for {silent_s:.1} s ({MISSED_HEARTBEATS} intervals missed)"),
            ),
            // Only a node whose announcement the hub holds: one that said `Offline` is Ready
            // again when it says `Online`.
            (true, false) if flip.announced => {
                (true, "NodeReady", "heartbeats resumed".to_string())
            }
            _ => return,
        };
        let rec = NodeRecord {
            ready,
            since_ms: now_ms,
            ..NodeRecord::clone(old)
        };
        p.batch
            .events
            .push(event(now_ms, "Node", node, reason, message));
        self.stage_node(p, rec);
        if ready {
            p.greet.insert(self.shared_name(node));
        }
    }

    fn stage_status(&mut self, p: &mut Pending, node: &str, status: NodeStatus, now_ms: u64) {
        if !self.nodes.contains_key(node) {
            tracing::debug!(%node, "ignoring the status of an unknown node");
            return;
        }
        if self.statuses.get(node).map(|s| &**s) == Some(&status) {
            // A duplicate (QoS 1 redelivery, a retained copy after a reconnect): nothing to
            // record, and its health was observed when it first came.
            return;
        }
        let name = self.shared_name(node);
        let old = self.statuses.get(node);
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
                p.batch
                    .events
                    .push(event(now_ms, "Workload", &w.name, w.phase.as_str(), msg));
            }
        }
        let held = self.desired.get(node).map_or(0, |d| d.generation);
        if status.observed_fleet == self.fleet && status.observed_generation > held {
            let mut state = self.desired_or_empty(node);
            state.generation = status.observed_generation + 1;
            p.batch.events.push(event(
                now_ms,
                "Node",
                node,
                "GenerationReissued",
                format!(
                    "node acted on generation {} but the store holds {held}; re-issued as {}",
                    status.observed_generation, state.generation
                ),
            ));
            p.batch.put_desired.push((node.to_owned(), state.frame()));
            let old = Arc::make_mut(&mut self.desired).insert(name.clone(), Arc::new(state));
            p.old_desired.entry(name.clone()).or_insert(old);
            p.greet.insert(name.clone());
        }
        if status.observed_fleet == self.fleet {
            rollouts::observe(
                &mut self.health,
                &self.deployments,
                node,
                &self.placement,
                &status,
                now_ms,
            );
        }
        let current = self.desired.get(node).is_some_and(|d| {
            (status.observed_fleet, status.observed_generation) == (d.fleet, d.generation)
        });
        if current {
            self.behind.remove(node);
            self.sent.remove(node);
        } else {
            self.behind.insert(name.clone());
        }
        Arc::make_mut(&mut self.statuses).insert(name, Arc::new(status));
        self.version += 1;
    }

    /// Puts `rec` in place now (scheduling in this batch sees it) and in the batch's writes.
    fn stage_node(&mut self, p: &mut Pending, rec: NodeRecord) {
        let name = rec.name.clone();
        let old = self.put_node(Arc::new(rec.clone()));
        p.reschedule |= scheduler::node_change_may_move(
            old.as_deref(),
            &rec,
            &self.deployments,
            &self.placement,
            self.config.not_ready_grace_ms,
        );
        p.old_nodes.entry(name).or_insert(old);
        p.batch.put_nodes.push(rec);
    }

    /// Commits what `p` staged: one scheduler pass if a node changed in a way placement may
    /// answer, one store transaction, then the desired states of greeted nodes. On a store
    /// error the staged node records and desired states are put back.
    fn flush(&mut self, mut p: Pending, now_ms: u64) -> Result<Vec<Publish>, ControllerError> {
        let result = if p.reschedule {
            self.reconcile_into(None, &mut p.batch, now_ms)
        } else {
            self.store
                .commit(&p.batch)
                .map(|()| vec![])
                .map_err(ControllerError::from)
        };
        let mut publish = match result {
            Ok(publish) => publish,
            Err(e) => {
                for (node, old) in p.old_nodes {
                    match old {
                        Some(rec) => {
                            self.put_node(rec);
                        }
                        None => self.remove_node(&node),
                    }
                }
                for (node, old) in p.old_desired {
                    match old {
                        Some(state) => Arc::make_mut(&mut self.desired).insert(node, state),
                        None => Arc::make_mut(&mut self.desired).remove(&node),
                    };
                }
                return Err(e);
            }
        };
        if !p.batch.put_nodes.is_empty() || !p.greet.is_empty() {
            self.version += 1;
        }
        let published: HashSet<&str> = publish.iter().map(|x| x.topic.as_str()).collect();
        let mut greetings = Vec::new();
        for node in &p.greet {
            if !self.nodes.get(node).is_some_and(|n| n.ready)
                || published.contains(topic::node_topic(node, topic::NodeTopic::Desired).as_str())
            {
                continue;
            }
            let state = self.desired_or_empty(node);
            greetings.push(desired_publish(&mut self.sent, node, state.frame(), now_ms));
        }
        publish.extend(greetings);
        Ok(publish)
    }

    /// What `node` should run. A node the hub holds nothing for gets an empty state of this
    /// fleet, which stops whatever it still runs from an earlier hub or a wiped store.
    fn desired_or_empty(&self, node: &str) -> NodeDesired {
        self.desired.get(node).map_or_else(
            || NodeDesired {
                fleet: self.fleet,
                ..NodeDesired::default()
            },
            |s| NodeDesired::clone(s),
        )
    }
}
