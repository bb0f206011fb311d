//! The rollout state machine: from a rollout's status, its strategy and what the replicas
//! report, the next status (and the event that says why), or nothing when nothing changes.
//! Pure: the controller calls [`step`] on every tick and report, and derives each replica's
//! revision from the status ([`RolloutStatus::runs_new`]).

use wasmfleet_proto::Phase;

use crate::model::rollout::{RolloutPhase, RolloutStatus, RolloutStrategy};

/// What the hub knows of one replica, in workload order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replica {
    /// Workload name.
    pub name: String,
    /// Its node, if placed.
    pub node: Option<String>,
    /// Whether that node is Ready. Replicas on NotReady nodes count as unavailable (up to
    /// `maxUnavailable` of them) rather than blocking the rollout: they converge to the
    /// revision when their node returns.
    pub node_ready: bool,
    /// Its last reported phase and revision, if its node reported it.
    pub reported: Option<(Phase, u64)>,
    /// Failures seen at the rollout's revision: restarts since it first reported that
    /// revision, plus one if it is Failed.
    pub failures: u32,
    /// Since when it has been Running at the rollout's revision without a restart.
    pub running_since_ms: Option<u64>,
    /// Its node's last message about it (why it failed or waits).
    pub message: String,
}

/// A rollout's next status and the event that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The new status.
    pub status: RolloutStatus,
    /// Event reason and message, when the change is worth one.
    pub event: Option<(&'static str, String)>,
}

/// Advances a Progressing rollout of `replicas` (every replica of the deployment, in workload
/// order; the first `status.updated` run the new revision).
pub fn step(
    strategy: &RolloutStrategy,
    status: &RolloutStatus,
    replicas: &[Replica],
    now_ms: u64,
) -> Option<Step> {
    if status.phase != RolloutPhase::Progressing {
        return None;
    }
    let n = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
    let updated = if status.stable.is_none() {
        n
    } else {
        status.updated.min(n)
    };
    let switched = &replicas[..updated as usize];
    let revision = status.revision;
    let failures: u32 = switched.iter().map(|r| r.failures).sum();
    if failures >= strategy.failure_threshold {
        let culprit = switched.iter().find(|r| r.failures > 0);
        return Some(fail(status, culprit, "failed", now_ms));
    }
    let at_revision = |r: &&Replica| matches!(r.reported, Some((Phase::Running | Phase::Succeeded, rev)) if rev == revision);
    let healthy = |r: &&Replica| {
        matches!(r.reported, Some((Phase::Succeeded, rev)) if rev == revision)
            || r.running_since_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= strategy.healthy_for_ms)
                && at_revision(r)
    };
    let mu = strategy.max_unavailable(n);
    // Switched replicas that cannot run now (their node is NotReady, or they have none) do not
    // hold the rollout back, up to maxUnavailable of them: they converge when their node
    // returns. For switching they count as settled ...
    let unavailable = switched.iter().filter(|r| !r.node_ready).count();
    let excused = u32::try_from(unavailable).unwrap_or(u32::MAX).min(mu);
    let running = switched
        .iter()
        .filter(|r| r.node_ready && at_revision(r))
        .count();
    let settled = u32::try_from(running).unwrap_or(u32::MAX) + excused;
    let wave = status.wave as usize;
    let waves = strategy.waves.len();
    // A first deployment has nothing to protect: one wave of everything.
    let first = status.stable.is_none();
    let target = if first {
        n
    } else {
        strategy.wave_target(wave, n)
    };
    let next_updated = updated.max(target.min(settled + mu));
    // ... and for a wave's health, except that every wave needs at least one replica proven
    // healthy: a wave of absent nodes (or a hub that just restarted and heard nobody yet)
    // proves nothing.
    let allowed = if first {
        excused
    } else {
        excused.min(target.saturating_sub(1))
    };
    let healthy_ready = switched
        .iter()
        .filter(|r| r.node_ready && healthy(r))
        .count();
    let all_healthy = healthy_ready + allowed as usize >= target as usize;
    let mut next = status.clone();
    next.updated = next_updated;
    if updated >= target && all_healthy {
        if first || wave + 1 >= waves || target >= n {
            next.phase = RolloutPhase::Complete;
            next.wave = u32::try_from(waves.saturating_sub(1)).unwrap_or(0);
            next.message = format!("revision {revision} runs on all {n} replicas");
            return Some(Step {
                status: next,
                event: Some((
                    "RolloutComplete",
                    format!("revision {revision} rolled out to {n} replicas"),
                )),
            });
        }
        next.wave += 1;
        next.wave_started_ms = now_ms;
        next.updated = updated.max(strategy.wave_target(wave + 1, n).min(settled + mu));
        return Some(Step {
            status: next,
            event: Some((
                "WaveComplete",
                format!(
                    "wave {}/{waves} healthy: {target} of {n} replicas at revision {revision}",
                    wave + 1
                ),
            )),
        });
    }
    if now_ms.saturating_sub(status.wave_started_ms) > strategy.progress_deadline_ms {
        let late = switched.iter().find(|r| !healthy(r));
        return Some(fail(
            status,
            late,
            "not healthy within the progress deadline",
            now_ms,
        ));
    }
    (next != *status).then_some(Step {
        status: next,
        event: None,
    })
}

/// The failed rollout: back to the stable revision, if there is one.
fn fail(status: &RolloutStatus, culprit: Option<&Replica>, what: &str, now_ms: u64) -> Step {
    let who = culprit.map_or_else(String::new, |r| {
        let mut s = format!(
            "{} {what}{}",
            r.name,
            r.node
                .as_deref()
                .map_or_else(String::new, |n| format!(" on node {n}"))
        );
        if let Some((phase, rev)) = r.reported {
            s += &format!(" ({} at revision {rev})", phase.as_str());
        }
        if !r.message.is_empty() {
            s += &format!(": {}", r.message);
        }
        s
    });
    let back = match status.stable {
        Some(stable) => format!("rolled back to revision {stable}"),
        None => "no earlier revision to roll back to".into(),
    };
    let message = format!(
        "revision {} failed in wave {}: {who}; {back}",
        status.revision,
        status.wave + 1
    );
    Step {
        status: RolloutStatus {
            phase: RolloutPhase::Failed,
            updated: 0,
            wave_started_ms: now_ms,
            message: message.clone(),
            ..status.clone()
        },
        event: Some(("RolloutFailed", message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rollout::Share;

    fn strategy() -> RolloutStrategy {
        RolloutStrategy {
            waves: vec![Share::Count(1), Share::Percent(50), Share::Percent(100)],
            healthy_for_ms: 1_000,
            max_unavailable: Share::Count(1),
            failure_threshold: 1,
            progress_deadline_ms: 60_000,
        }
    }

    fn status(updated: u32, wave: u32) -> RolloutStatus {
        RolloutStatus {
            revision: 2,
            stable: Some(1),
            wave,
            updated,
            wave_started_ms: 0,
            phase: RolloutPhase::Progressing,
            message: String::new(),
        }
    }

    fn replicas(n: usize) -> Vec<Replica> {
        (0..n)
            .map(|i| Replica {
                name: format!("app-{i}"),
                node: Some(format!("n{i}")),
                node_ready: true,
                reported: Some((Phase::Running, 1)),
                ..Replica::default()
            })
            .collect()
    }

    fn running_new(r: &mut Replica, since: u64) {
        r.reported = Some((Phase::Running, 2));
        r.running_since_ms = Some(since);
    }

    /// Drives a rollout where every switched replica starts Running at once, to completion.
    #[test]
    fn healthy_waves_advance_one_by_one_to_complete() {
        let s = strategy();
        let mut st = status(0, 0);
        let mut reps = replicas(4);
        let mut now = 0;
        let mut events = Vec::new();
        while st.phase == RolloutPhase::Progressing && now < 30_000 {
            for r in reps.iter_mut().take(st.updated as usize) {
                if r.running_since_ms.is_none() {
                    running_new(r, now);
                }
            }
            if let Some(step) = step(&s, &st, &reps, now) {
                events.extend(step.event.map(|e| e.0));
                st = step.status;
            }
            now += 250;
        }
        assert_eq!(st.phase, RolloutPhase::Complete, "{st:?}");
        assert_eq!(events, ["WaveComplete", "WaveComplete", "RolloutComplete"]);
        assert_eq!(st.updated, 4);
    }

    #[test]
    fn the_first_wave_switches_one_replica_and_waits_for_it_to_be_healthy() {
        let s = strategy();
        let st = step(&s, &status(0, 0), &replicas(4), 0).unwrap().status;
        assert_eq!(st.updated, 1);
        assert!(step(&s, &st, &replicas(4), 10).is_none(), "not Running yet");
        let mut reps = replicas(4);
        running_new(&mut reps[0], 100);
        assert!(
            step(&s, &st, &reps, 1_099).is_none(),
            "not healthy for long enough"
        );
        let next = step(&s, &st, &reps, 1_100).unwrap();
        assert_eq!(next.status.wave, 1);
        assert_eq!(
            next.status.updated, 2,
            "wave 2 (50% of 4), one more at a time"
        );
    }

    #[test]
    fn a_failure_in_a_wave_rolls_back_naming_the_replica() {
        let s = strategy();
        let mut reps = replicas(4);
        reps[0].reported = Some((Phase::Failed, 2));
        reps[0].failures = 1;
        reps[0].message = "wasm trap: unreachable".into();
        let st = step(&s, &status(1, 0), &reps, 5).unwrap();
        assert_eq!(st.status.phase, RolloutPhase::Failed);
        assert_eq!(st.status.updated, 0);
        assert!(
            !st.status.runs_new(0),
            "everyone back on the stable revision"
        );
        let (reason, message) = st.event.unwrap();
        assert_eq!(reason, "RolloutFailed");
        assert!(message.contains("app-0 failed on node n0"), "{message}");
        assert!(message.contains("wasm trap: unreachable"), "{message}");
        assert!(message.contains("rolled back to revision 1"), "{message}");
        assert!(
            step(&s, &st.status, &reps, 10).is_none(),
            "failed stays failed"
        );
    }

    #[test]
    fn a_failure_below_the_threshold_does_not_fail_the_rollout() {
        let s = RolloutStrategy {
            failure_threshold: 2,
            ..strategy()
        };
        let mut reps = replicas(4);
        running_new(&mut reps[0], 0);
        reps[0].failures = 1;
        assert!(
            step(&s, &status(1, 0), &reps, 5)
                .is_none_or(|st| st.status.phase != RolloutPhase::Failed)
        );
    }

    #[test]
    fn a_wave_that_never_becomes_healthy_fails_at_the_deadline() {
        let s = strategy();
        let mut reps = replicas(4);
        reps[0].reported = Some((Phase::Pending, 2));
        reps[0].message = "fetching module".into();
        assert!(step(&s, &status(1, 0), &reps, 60_000).is_none());
        let st = step(&s, &status(1, 0), &reps, 60_001).unwrap();
        assert_eq!(st.status.phase, RolloutPhase::Failed);
        let message = st.event.unwrap().1;
        assert!(
            message.contains("not healthy within the progress deadline"),
            "{message}"
        );
        assert!(message.contains("Pending at revision 2"), "{message}");
    }

    #[test]
    fn a_replica_on_a_not_ready_node_does_not_block_the_rollout_beyond_max_unavailable() {
        let s = RolloutStrategy {
            waves: vec![Share::Percent(100)],
            max_unavailable: Share::Count(1),
            ..strategy()
        };
        let mut reps = replicas(3);
        for r in reps.iter_mut() {
            running_new(r, 0);
        }
        reps[1].node_ready = false;
        reps[1].reported = Some((Phase::Running, 1));
        reps[1].running_since_ms = None;
        let done = step(&s, &status(3, 0), &reps, 5_000).unwrap();
        assert_eq!(done.status.phase, RolloutPhase::Complete);
        // A wave of only absent replicas proves nothing.
        let mut absent = replicas(3);
        for r in absent.iter_mut() {
            r.node_ready = false;
        }
        let s1 = RolloutStrategy {
            waves: vec![Share::Count(1), Share::Percent(100)],
            ..s.clone()
        };
        assert!(
            step(&s1, &status(1, 0), &absent, 5_000).is_none_or(|st| st.status.wave == 0),
            "no wave completes on absent replicas"
        );
        // Two unavailable with maxUnavailable 1: it waits (and fails at the deadline).
        reps[2].node_ready = false;
        reps[2].running_since_ms = None;
        reps[2].reported = None;
        assert!(step(&s, &status(3, 0), &reps, 5_000).is_none());
    }

    #[test]
    fn an_absent_replica_does_not_use_up_the_switching_budget() {
        // Every-node on 4 nodes, one of them off: maxUnavailable 1 (25%).
        let s = RolloutStrategy {
            waves: vec![Share::Percent(100)],
            max_unavailable: Share::Percent(25),
            ..strategy()
        };
        let mut reps = replicas(4);
        reps[0].node_ready = false;
        let mut st = status(0, 0);
        let mut now = 0;
        while st.phase == RolloutPhase::Progressing && now < 30_000 {
            for r in reps
                .iter_mut()
                .take(st.updated as usize)
                .filter(|r| r.node_ready)
            {
                if r.running_since_ms.is_none() {
                    running_new(r, now);
                }
            }
            if let Some(next) = step(&s, &st, &reps, now) {
                st = next.status;
            }
            now += 250;
        }
        assert_eq!(st.phase, RolloutPhase::Complete, "{st:?}");
        assert_eq!(
            st.updated, 4,
            "the absent node gets the revision when it returns"
        );
    }

    #[test]
    fn paused_complete_and_failed_rollouts_do_not_move() {
        for phase in [
            RolloutPhase::Paused,
            RolloutPhase::Complete,
            RolloutPhase::Failed,
        ] {
            let st = RolloutStatus {
                phase,
                ..status(0, 0)
            };
            assert!(step(&strategy(), &st, &replicas(3), 1_000_000).is_none());
        }
    }

    #[test]
    fn a_first_deployment_has_no_waves_and_nothing_to_roll_back_to() {
        let st = RolloutStatus {
            stable: None,
            revision: 1,
            ..status(0, 0)
        };
        assert!(st.runs_new(3));
        let mut reps = replicas(2);
        for r in &mut reps {
            r.reported = Some((Phase::Running, 1));
            r.running_since_ms = Some(0);
        }
        let done = step(&strategy(), &st, &reps, 1_000).unwrap();
        assert_eq!(done.status.phase, RolloutPhase::Complete);
        reps[1].failures = 1;
        let failed = step(&strategy(), &st, &reps, 1_000).unwrap();
        assert!(failed.event.unwrap().1.contains("no earlier revision"));
    }
}
