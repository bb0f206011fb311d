//! The controller's side of rollouts: what replicas report, fed to the pure state machine
//! ([`crate::reconcile::rollout`]), and the user's `rollout pause|resume|undo`.

use std::collections::{BTreeMap, HashMap};

use wasmfleet_proto::{NodeStatus, Phase};

use super::{Controller, ControllerError, Publish, event};
use crate::model::deployment::deployment_of_workload;
use crate::model::rollout::{RolloutPhase, RolloutStatus};
use crate::model::{DeploymentRecord, NodeName};
use crate::reconcile::rollout::{Replica, step};
use crate::scheduler::Placement;
use crate::store::Batch;

/// What the hub has seen of one workload at one revision, from its node's reports. In memory
/// only: after a hub restart a wave waits `healthyFor` again, which errs on the safe side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Health {
    /// The node that reported it: a replica that moved starts over.
    node: String,
    revision: u64,
    /// Restarts of this revision's instance (agents count them per spec, from 0).
    restarts: u32,
    phase: Phase,
    running_since_ms: Option<u64>,
}

impl Health {
    fn failures(&self) -> u32 {
        self.restarts + u32::from(self.phase == Phase::Failed)
    }
}

/// Whether `workload` belongs to a deployment whose rollout is Progressing: only those
/// replicas' health is kept (a finished rollout needs none, and a new one starts with a new
/// revision, whose health starts from its first report).
pub(super) fn progressing(
    deployments: &BTreeMap<String, DeploymentRecord>,
    workload: &str,
) -> bool {
    deployments
        .get(deployment_of_workload(workload))
        .and_then(|d| d.rollout.as_ref())
        .is_some_and(|r| r.phase == RolloutPhase::Progressing)
}

/// Records what `node`'s `status` says of the workloads placed on it (a late report from a
/// node a replica left says nothing about the replica), for Progressing rollouts.
pub(super) fn observe(
    health: &mut HashMap<String, Health>,
    deployments: &BTreeMap<String, DeploymentRecord>,
    node: &str,
    placement: &Placement,
    status: &NodeStatus,
    now_ms: u64,
) {
    for w in &status.workloads {
        if placement.assigned.get(&w.name).map(NodeName::as_str) != Some(node)
            || !progressing(deployments, &w.name)
        {
            continue;
        }
        let running = w.phase == Phase::Running;
        let fresh = || Health {
            node: node.to_owned(),
            revision: w.revision,
            restarts: w.restarts,
            phase: w.phase,
            running_since_ms: running.then_some(now_ms),
        };
        let h = health.entry(w.name.clone()).or_insert_with(fresh);
        if h.revision != w.revision || h.node != node {
            *h = fresh();
            continue;
        }
        let restarted = w.restarts != h.restarts;
        h.restarts = w.restarts;
        h.phase = w.phase;
        h.running_since_ms = match (running, restarted, h.running_since_ms) {
            (false, _, _) => None,
            (true, true, _) | (true, false, None) => Some(now_ms),
            (true, false, Some(t)) => Some(t),
        };
    }
}

impl Controller {
    /// The replicas of `dep` as the rollout state machine sees them, in workload order.
    fn replicas(&self, dep: &DeploymentRecord, revision: u64) -> Vec<Replica> {
        self.placement
            .workloads_of(dep)
            .into_iter()
            .map(|name| {
                let node = self.placement.assigned.get(&name);
                let reported = node
                    .and_then(|n| self.statuses.get(n))
                    .filter(|s| s.observed_fleet == self.fleet)
                    .and_then(|s| s.workloads.iter().find(|w| w.name == name));
                let health = self.health.get(&name).filter(|h| h.revision == revision);
                Replica {
                    node_ready: node
                        .and_then(|n| self.nodes.get(n))
                        .is_some_and(|n| n.ready),
                    node: node.map(NodeName::to_string),
                    reported: reported.map(|w| (w.phase, w.revision)),
                    failures: health.map_or(0, Health::failures),
                    running_since_ms: health.and_then(|h| h.running_since_ms),
                    message: reported.map(|w| w.message.clone()).unwrap_or_default(),
                    name,
                }
            })
            .collect()
    }

    /// Steps every Progressing rollout; commits the changes and the desired states they imply.
    pub(super) fn step_rollouts(&mut self, now_ms: u64) -> Result<Vec<Publish>, ControllerError> {
        let mut batch = Batch::default();
        for dep in self.deployments.values() {
            // Only a Progressing rollout moves: the others cost nothing per tick.
            let Some(status) = dep
                .rollout
                .as_ref()
                .filter(|r| r.phase == RolloutPhase::Progressing)
            else {
                continue;
            };
            let replicas = self.replicas(dep, status.revision);
            let Some(s) = step(&dep.spec.rollout, status, &replicas, now_ms) else {
                continue;
            };
            if let Some((reason, message)) = s.event {
                batch
                    .events
                    .push(event(now_ms, "Deployment", &dep.name, reason, message));
            }
            let mut rec = dep.clone();
            if s.status.phase == RolloutPhase::Complete {
                rec.prune_history(Some(s.status.revision));
            }
            rec.rollout = Some(s.status);
            batch.put_deployments.push(rec);
        }
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let mut next = self.deployments.clone();
        for rec in &batch.put_deployments {
            next.insert(rec.name.clone(), rec.clone());
        }
        self.reconcile_into(Some(next), &mut batch, now_ms)
    }

    /// `rollout pause` and `rollout resume`.
    pub fn pause_rollout(
        &mut self,
        name: &str,
        pause: bool,
        now_ms: u64,
    ) -> Result<Vec<Publish>, ControllerError> {
        let dep = self.deployment(name)?;
        let Some(status) = dep.rollout.clone() else {
            return Err(ControllerError::Invalid(format!(
                "deployment {name:?} has no rollout"
            )));
        };
        let (from, to, reason) = match pause {
            true => (
                RolloutPhase::Progressing,
                RolloutPhase::Paused,
                "RolloutPaused",
            ),
            false => (
                RolloutPhase::Paused,
                RolloutPhase::Progressing,
                "RolloutResumed",
            ),
        };
        if status.phase == to {
            return Ok(vec![]);
        }
        if status.phase != from {
            return Err(ControllerError::Invalid(format!(
                "the rollout of revision {} of {name:?} is {}: only a {} rollout can be {}",
                status.revision,
                status.phase.as_str(),
                from.as_str(),
                if pause { "paused" } else { "resumed" }
            )));
        }
        let mut rec = dep.clone();
        rec.rollout = Some(RolloutStatus {
            phase: to,
            // A resumed wave gets its full deadline again.
            wave_started_ms: now_ms,
            message: if pause {
                "paused by the user".into()
            } else {
                String::new()
            },
            ..status
        });
        let mut batch = Batch {
            events: vec![event(
                now_ms,
                "Deployment",
                name,
                reason,
                format!("revision {} {}", rec.revision, reason[7..].to_lowercase()),
            )],
            put_deployments: vec![rec.clone()],
            ..Batch::default()
        };
        let mut next = self.deployments.clone();
        next.insert(name.to_owned(), rec);
        self.reconcile_into(Some(next), &mut batch, now_ms)
    }

    /// `rollout undo [--to-revision N]`: rolls out the template of revision `to` (default: the
    /// last good one before the current) as a new revision.
    pub fn undo_rollout(
        &mut self,
        name: &str,
        to: Option<u64>,
        now_ms: u64,
    ) -> Result<(u64, Vec<Publish>), ControllerError> {
        let dep = self.deployment(name)?;
        let current = dep.revision;
        let target = match to {
            Some(r) => r,
            None => dep
                .rollout
                .as_ref()
                .and_then(|r| r.stable.filter(|s| *s != current))
                .or_else(|| {
                    dep.history
                        .iter()
                        .map(|h| h.revision)
                        .filter(|r| *r < current)
                        .max()
                })
                .ok_or_else(|| {
                    ControllerError::Invalid(format!(
                        "deployment {name:?} has no earlier revision to roll back to"
                    ))
                })?,
        };
        let template = dep
            .history
            .iter()
            .find(|h| h.revision == target)
            .ok_or_else(|| {
                let kept: Vec<String> =
                    dep.history.iter().map(|h| h.revision.to_string()).collect();
                ControllerError::NotFound(format!(
                    "revision {target} of {name:?} not found (kept: {})",
                    kept.join(", ")
                ))
            })?;
        if target == current {
            return Err(ControllerError::Invalid(format!(
                "revision {target} is the current revision of {name:?}"
            )));
        }
        let mut spec = template.spec.clone();
        // The replica count is today's, unless the revision counted differently (every-node).
        if spec.placement == dep.spec.placement {
            spec.replicas = dep.spec.replicas;
        }
        spec.rollout = dep.spec.rollout.clone();
        let cause = format!("rollout undo to revision {target}");
        let (_, _, publish) = self.apply_with_cause(name, spec, Some(cause), now_ms)?;
        let revision = self.deployment(name)?.revision;
        Ok((revision, publish))
    }

    fn deployment(&self, name: &str) -> Result<&DeploymentRecord, ControllerError> {
        self.deployments
            .get(name)
            .ok_or_else(|| ControllerError::NotFound(format!("deployment {name:?} not found")))
    }
}

/// The rollout of a new template revision: from the last good revision, or from nothing.
pub(super) fn start(old: Option<&DeploymentRecord>, revision: u64, now_ms: u64) -> RolloutStatus {
    // The last good revision: the old one if its rollout completed (or predates rollouts),
    // else the one its rollout started from (an unfinished revision is not proven good).
    let stable = old.and_then(|o| match &o.rollout {
        None => Some(o.revision),
        Some(r) if r.phase == RolloutPhase::Complete => Some(o.revision),
        Some(r) => r.stable,
    });
    RolloutStatus {
        revision,
        stable,
        wave: 0,
        updated: 0,
        wave_started_ms: now_ms,
        phase: RolloutPhase::Progressing,
        message: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::WorkloadStatus;

    use super::*;

    fn placed() -> Placement {
        Placement {
            assigned: [("app-0".to_string(), "a".into())].into(),
            ..Placement::default()
        }
    }

    /// `app`, its rollout Progressing.
    fn rolling() -> BTreeMap<String, DeploymentRecord> {
        let mut app = crate::scheduler::tests::deployment("app", 1);
        app.rollout = Some(start(None, 1, 0));
        BTreeMap::from([("app".to_string(), app)])
    }

    fn status(restarts: u32, phase: Phase, revision: u64) -> NodeStatus {
        NodeStatus {
            workloads: vec![WorkloadStatus {
                name: "app-0".into(),
                revision,
                phase,
                restarts,
                exit_code: None,
                message: String::new(),
            }],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn health_counts_restarts_at_a_revision_and_running_time_since_the_last() {
        let mut h = HashMap::new();
        let p = placed();
        let d = rolling();
        observe(&mut h, &d, "a", &p, &status(3, Phase::Running, 1), 0);
        observe(&mut h, &d, "a", &p, &status(0, Phase::Pending, 2), 10);
        assert_eq!(
            h["app-0"].failures(),
            0,
            "restarts of revision 1 do not count"
        );
        observe(&mut h, &d, "a", &p, &status(0, Phase::Running, 2), 20);
        assert_eq!(h["app-0"].running_since_ms, Some(20));
        observe(&mut h, &d, "a", &p, &status(0, Phase::Running, 2), 30);
        assert_eq!(h["app-0"].running_since_ms, Some(20));
        observe(&mut h, &d, "a", &p, &status(1, Phase::Running, 2), 40);
        assert_eq!(h["app-0"].failures(), 1);
        assert_eq!(
            h["app-0"].running_since_ms,
            Some(40),
            "a restart resets the clock"
        );
        observe(&mut h, &d, "a", &p, &status(1, Phase::Failed, 2), 50);
        assert_eq!(h["app-0"].failures(), 2);
        assert_eq!(h["app-0"].running_since_ms, None);
        // A node the replica is not placed on says nothing about it.
        observe(&mut h, &d, "b", &p, &status(9, Phase::Failed, 2), 60);
        assert_eq!(h["app-0"].failures(), 2);
    }

    #[test]
    fn a_crash_already_in_the_first_report_counts() {
        let mut h = HashMap::new();
        observe(
            &mut h,
            &rolling(),
            "a",
            &placed(),
            &status(1, Phase::Running, 2),
            0,
        );
        assert_eq!(h["app-0"].failures(), 1);
    }

    #[test]
    fn replicas_of_a_finished_rollout_keep_no_health() {
        let mut d = rolling();
        d.get_mut("app").unwrap().rollout.as_mut().unwrap().phase = RolloutPhase::Complete;
        let mut h = HashMap::new();
        observe(&mut h, &d, "a", &placed(), &status(1, Phase::Running, 2), 0);
        assert!(
            h.is_empty(),
            "a converged fleet costs no memory per replica here"
        );
        assert!(!progressing(&d, "app-0"));
        assert!(progressing(&rolling(), "app-0"));
    }
}
