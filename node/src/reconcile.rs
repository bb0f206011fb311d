//! The pure core of the agent: from the desired state, what is actually running and the time,
//! decide what to do ([`reconcile`]) and what to report ([`status`]).
//!
//! Which desired workloads the node takes on, and from which blob, is decided before, by
//! [`crate::admission`]; its verdicts are an input here.
//!
//! No tokio, no wasmtime, no I/O, no clock: `now` is a parameter (time since an arbitrary
//! origin, e.g. agent start). The agent loop carries out the returned [`Action`]s and records
//! their outcome in [`Actual`]. Reconciling is idempotent: calling it again with the same
//! inputs yields the same actions, so the loop may run it as often as it likes.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use wasmfleet_proto::{
    DesiredState, Digest, ModuleRef, NodeStatus, Phase, RestartPolicy, WorkloadSpec, WorkloadStatus,
};

use crate::admission::Verdict;

/// Verdicts of [`crate::admission::admit`], by workload name.
pub type Verdicts = BTreeMap<String, Verdict>;

/// First restart delay; doubles with each restart of a crash streak.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// An instance that ran this long before it exited ends its crash streak: its next restart
/// waits [`BACKOFF_BASE`] again, as Kubernetes resets a pod's back-off after ten minutes.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// What the agent knows about its instances, keyed by workload name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actual {
    /// One entry per workload the agent started and has not stopped (running or exited).
    pub workloads: BTreeMap<String, WorkloadActual>,
}

/// The observed state of one workload's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadActual {
    /// The spec the instance was started from.
    pub spec: WorkloadSpec,
    /// Running or exited.
    pub run: RunState,
    /// Restarts done so far for this spec (reported; never reset, like `restartCount`).
    pub restarts: u32,
    /// Restarts in the current crash streak: the back-off exponent.
    pub streak: u32,
    /// When the current (or last) run started, same time origin as `now`.
    pub started_at: Duration,
}

impl WorkloadActual {
    /// A run of `spec` started at `now`, the first of its spec.
    pub fn started(spec: WorkloadSpec, now: Duration) -> WorkloadActual {
        WorkloadActual {
            spec,
            run: RunState::Running,
            restarts: 0,
            streak: 0,
            started_at: now,
        }
    }

    /// The crash streak that decides the next restart delay: 0 again if the last run lasted
    /// [`BACKOFF_RESET`].
    pub fn effective_streak(&self) -> u32 {
        match &self.run {
            RunState::Exited { at, .. } if at.saturating_sub(self.started_at) >= BACKOFF_RESET => 0,
            _ => self.streak,
        }
    }

    /// The state after restarting this instance at `now`.
    pub fn restarted(&self, spec: WorkloadSpec, now: Duration) -> WorkloadActual {
        WorkloadActual {
            spec,
            run: RunState::Running,
            restarts: self.restarts.saturating_add(1),
            streak: self.effective_streak().saturating_add(1),
            started_at: now,
        }
    }
}

/// Whether an instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Executing.
    Running,
    /// Exited at `at` (same time origin as `now`).
    Exited {
        /// How it ended.
        exit: Exit,
        /// When it ended.
        at: Duration,
    },
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, if the guest exited rather than trapped or failed to start.
    pub code: Option<i32>,
    /// Empty on success; otherwise why it failed (trap message, compile error, exit code).
    pub message: String,
    /// Never restarted whatever the restart policy (the run exceeded its `maxRunTime`, as a
    /// Kubernetes pod past its `activeDeadlineSeconds`).
    pub terminal: bool,
}

impl Exit {
    /// A clean exit with code 0.
    pub fn success() -> Exit {
        Exit {
            code: Some(0),
            message: String::new(),
            terminal: false,
        }
    }

    /// A failure with a message and maybe an exit code.
    pub fn failure(code: Option<i32>, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
            terminal: false,
        }
    }

    /// A run stopped for exceeding its `maxRunTime`: failed, and not restarted.
    pub fn deadline(message: impl Into<String>) -> Exit {
        Exit {
            terminal: true,
            ..Exit::failure(None, message)
        }
    }

    /// Exit code 0 counts as success; traps and start failures have no code.
    pub fn is_success(&self) -> bool {
        self.code == Some(0)
    }
}

/// One step for the agent loop to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch this module into the blob store.
    FetchBlob(ModuleRef),
    /// Start a new instance (restart count 0).
    Start(WorkloadSpec),
    /// Start the instance again after an exit (restart count + 1).
    Restart(WorkloadSpec),
    /// Stop (if running) and forget the instance of this workload.
    Stop(String),
}

/// Restart delay after a crash streak of `streak` restarts: `min(1 s · 2^streak, 60 s)`.
pub fn backoff(streak: u32) -> Duration {
    crate::exponential(BACKOFF_BASE, BACKOFF_MAX, streak)
}

/// Whether an exit is followed by a restart under `policy`.
fn restarts_after(policy: RestartPolicy, exit: &Exit) -> bool {
    if exit.terminal {
        return false;
    }
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !exit.is_success(),
        RestartPolicy::Never => false,
    }
}

/// Diffs desired against actual. Stops come before starts, so a changed spec is replaced
/// (stop old, start new) in one pass. Only workloads admitted to run (`verdicts`) start; an
/// instance whose workload is no longer admitted is stopped.
pub fn reconcile(
    desired: &DesiredState,
    actual: &Actual,
    verdicts: &Verdicts,
    blobs_present: &impl Fn(&Digest) -> bool,
    now: Duration,
) -> Vec<Action> {
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    let runnable = |name: &str| verdicts.get(name).and_then(Verdict::blob).copied();
    for name in actual.workloads.keys() {
        if !desired.workloads.iter().any(|w| &w.name == name) || runnable(name).is_none() {
            stops.push(Action::Stop(name.clone()));
        }
    }
    for spec in &desired.workloads {
        let Some(blob) = runnable(&spec.name) else {
            continue;
        };
        match actual.workloads.get(&spec.name) {
            Some(a) if a.spec != *spec => {
                stops.push(Action::Stop(spec.name.clone()));
                starts.push(start_or_fetch(spec, blob, blobs_present));
            }
            None => starts.push(start_or_fetch(spec, blob, blobs_present)),
            Some(WorkloadActual {
                run: RunState::Running,
                ..
            }) => {}
            Some(
                a @ WorkloadActual {
                    run: RunState::Exited { exit, at },
                    ..
                },
            ) => {
                if restarts_after(spec.restart, exit) && now >= *at + backoff(a.effective_streak())
                {
                    starts.push(match start_or_fetch(spec, blob, blobs_present) {
                        Action::Start(s) => Action::Restart(s),
                        fetch => fetch,
                    });
                }
            }
        }
    }
    stops.extend(starts);
    stops
}

fn start_or_fetch(
    spec: &WorkloadSpec,
    blob: ModuleRef,
    blobs_present: &impl Fn(&Digest) -> bool,
) -> Action {
    if blobs_present(&blob.digest) {
        Action::Start(spec.clone())
    } else {
        Action::FetchBlob(blob)
    }
}

/// The status to report: one entry per desired workload, sorted by name. `blob_problem` gives
/// the reason a missing module is not arriving (e.g. the hub does not have it), if any.
pub fn status(
    desired: &DesiredState,
    actual: &Actual,
    verdicts: &Verdicts,
    blobs_present: &impl Fn(&Digest) -> bool,
    blob_problem: &impl Fn(&Digest) -> Option<String>,
) -> NodeStatus {
    let mut workloads: Vec<WorkloadStatus> = desired
        .workloads
        .iter()
        .map(|spec| {
            let not_run = |phase: Phase, message: &str| WorkloadStatus {
                name: spec.name.clone(),
                revision: spec.revision,
                phase,
                restarts: 0,
                exit_code: None,
                message: message.to_owned(),
            };
            match verdicts.get(&spec.name) {
                Some(Verdict::Run(blob)) => workload_status(
                    spec,
                    blob,
                    actual.workloads.get(&spec.name),
                    blobs_present,
                    blob_problem,
                ),
                Some(Verdict::Wait(why)) => not_run(Phase::Pending, why),
                Some(Verdict::Refuse(why)) => not_run(Phase::Failed, why),
                None => not_run(Phase::Pending, "not admitted yet"),
            }
        })
        .collect();
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    NodeStatus {
        observed_fleet: desired.fleet,
        observed_generation: desired.generation,
        workloads,
    }
}

fn workload_status(
    spec: &WorkloadSpec,
    blob: &ModuleRef,
    actual: Option<&WorkloadActual>,
    blobs_present: &impl Fn(&Digest) -> bool,
    blob_problem: &impl Fn(&Digest) -> Option<String>,
) -> WorkloadStatus {
    let pending = |message: String| WorkloadStatus {
        name: spec.name.clone(),
        revision: spec.revision,
        phase: Phase::Pending,
        restarts: 0,
        exit_code: None,
        message,
    };
    let Some(a) = actual.filter(|a| a.spec == *spec) else {
        let digest = blob.digest;
        return pending(if blobs_present(&digest) {
            "starting".into()
        } else if let Some(problem) = blob_problem(&digest) {
            problem
        } else {
            format!("fetching module {}", digest.short())
        });
    };
    let mut st = WorkloadStatus {
        restarts: a.restarts,
        ..pending(String::new())
    };
    match &a.run {
        RunState::Running => st.phase = Phase::Running,
        RunState::Exited { exit, .. } => {
            st.exit_code = exit.code;
            if restarts_after(spec.restart, exit) {
                // A stable message (no countdown), so status does not change every second.
                // A failure stays Failed while backing off (kubectl's CrashLoopBackOff): the
                // operator must see the trap, not a calm Pending.
                let what = if exit.is_success() {
                    "exited with code 0".to_string()
                } else {
                    st.phase = Phase::Failed;
                    exit.message.clone()
                };
                st.message = format!(
                    "{what}; restarting after {}s back-off",
                    backoff(a.effective_streak()).as_secs()
                );
            } else if exit.is_success() {
                st.phase = Phase::Succeeded;
            } else {
                st.phase = Phase::Failed;
                st.message = exit.message.clone();
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{NodeOffer, admit};
    use alloc::vec;
    use wasmfleet_proto::{Capabilities, Code, Limits};

    /// An agent with a compiler and room for everything: each spec runs its source module.
    const OFFER: NodeOffer = NodeOffer {
        max_workloads: 100,
        memory_bytes: u64::MAX,
        compiler: true,
    };

    fn r(
        d: &DesiredState,
        a: &Actual,
        present: &impl Fn(&Digest) -> bool,
        now: Duration,
    ) -> Vec<Action> {
        reconcile(d, a, &admit(d, &OFFER), present, now)
    }

    fn status_of(
        d: &DesiredState,
        a: &Actual,
        present: &impl Fn(&Digest) -> bool,
        problem: &impl Fn(&Digest) -> Option<String>,
    ) -> NodeStatus {
        status(d, a, &admit(d, &OFFER), present, problem)
    }

    const S: Duration = Duration::from_secs(1);

    fn spec(name: &str, policy: RestartPolicy) -> WorkloadSpec {
        WorkloadSpec {
            name: name.into(),
            deployment: "d".into(),
            revision: 1,
            module: ModuleRef {
                digest: Digest([1; 32]),
                size: 100,
            },
            args: vec![],
            env: vec![],
            limits: Limits {
                memory_bytes: 1 << 24,
                cpu_millis: None,
                max_run_ms: None,
            },
            restart: policy,
            code: Code::Source,
            namespace: "default".into(),
            config: vec![],
            capabilities: Capabilities::default(),
        }
    }

    fn desired(specs: Vec<WorkloadSpec>) -> DesiredState {
        DesiredState {
            fleet: 1,
            generation: 3,
            workloads: specs,
        }
    }

    /// Instances with `restarts` restarts, all in one crash streak, started at time zero.
    fn with(entries: Vec<(WorkloadSpec, RunState, u32)>) -> Actual {
        let workloads = entries
            .into_iter()
            .map(|(spec, run, restarts)| {
                (
                    spec.name.clone(),
                    WorkloadActual {
                        spec,
                        run,
                        restarts,
                        streak: restarts,
                        started_at: Duration::ZERO,
                    },
                )
            })
            .collect();
        Actual { workloads }
    }

    fn exited(code: Option<i32>, at: Duration) -> RunState {
        let exit = if code == Some(0) {
            Exit::success()
        } else {
            Exit::failure(code, "boom")
        };
        RunState::Exited { exit, at }
    }

    const YES: fn(&Digest) -> bool = |_| true;
    const NO: fn(&Digest) -> bool = |_| false;
    const NONE: fn(&Digest) -> Option<String> = |_| None;

    #[test]
    fn new_workload_fetches_then_starts() {
        let a = spec("a", RestartPolicy::Always);
        let d = desired(vec![a.clone()]);
        assert_eq!(
            r(&d, &Actual::default(), &NO, S),
            vec![Action::FetchBlob(a.module)]
        );
        assert_eq!(
            r(&d, &Actual::default(), &YES, S),
            vec![Action::Start(a.clone())]
        );
        let st = status_of(&d, &Actual::default(), &NO, &NONE);
        assert_eq!(st.observed_generation, 3);
        assert_eq!(st.workloads[0].phase, Phase::Pending);
        assert!(
            st.workloads[0].message.contains("fetching module"),
            "{:?}",
            st.workloads[0]
        );
        let problem = |_: &Digest| Some("hub has no module".to_string());
        assert_eq!(
            status_of(&d, &Actual::default(), &NO, &problem).workloads[0].message,
            "hub has no module"
        );
    }

    #[test]
    fn running_is_left_alone() {
        let a = spec("a", RestartPolicy::Always);
        let actual = with(vec![(a.clone(), RunState::Running, 2)]);
        assert_eq!(r(&desired(vec![a.clone()]), &actual, &YES, S), vec![]);
        let st = status_of(&desired(vec![a]), &actual, &YES, &NONE);
        assert_eq!(
            (st.workloads[0].phase, st.workloads[0].restarts),
            (Phase::Running, 2)
        );
    }

    #[test]
    fn changed_spec_is_stopped_then_started() {
        let old = spec("a", RestartPolicy::Always);
        let mut new = old.clone();
        new.args = vec!["--count".into(), "1".into()];
        let actual = with(vec![(old, RunState::Running, 0)]);
        assert_eq!(
            r(&desired(vec![new.clone()]), &actual, &YES, S),
            vec![Action::Stop("a".into()), Action::Start(new.clone())]
        );
        // A new module that is not here yet: stop the old one, fetch the new one.
        new.module.digest = Digest([9; 32]);
        let present = |d: &Digest| d.0[0] == 1;
        assert_eq!(
            r(&desired(vec![new.clone()]), &actual, &present, S),
            vec![Action::Stop("a".into()), Action::FetchBlob(new.module)]
        );
    }

    #[test]
    fn removed_workloads_are_stopped() {
        let a = spec("a", RestartPolicy::Always);
        let b = spec("b", RestartPolicy::Never);
        let actual = with(vec![
            (a.clone(), RunState::Running, 0),
            (b, exited(Some(1), S), 0),
        ]);
        assert_eq!(
            r(&desired(vec![a]), &actual, &YES, S),
            vec![Action::Stop("b".into())]
        );
        assert_eq!(
            r(&desired(vec![]), &actual, &YES, S),
            vec![Action::Stop("a".into()), Action::Stop("b".into())]
        );
    }

    #[test]
    fn crash_loop_reports_failed_with_the_trap_while_backing_off() {
        let a = spec("a", RestartPolicy::Always);
        let d = desired(vec![a.clone()]);
        let actual = with(vec![(a.clone(), exited(Some(1), 10 * S), 2)]);
        let st = status_of(&d, &actual, &YES, &NONE);
        assert_eq!(st.workloads[0].phase, Phase::Failed);
        assert_eq!(st.workloads[0].restarts, 2);
        assert!(
            st.workloads[0]
                .message
                .contains("restarting after 4s back-off"),
            "{:?}",
            st.workloads[0]
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), S);
        assert_eq!(backoff(1), 2 * S);
        assert_eq!(backoff(5), 32 * S);
        assert_eq!(backoff(6), 60 * S);
        assert_eq!(backoff(40), 60 * S);
    }

    #[test]
    fn always_restarts_after_backoff_even_on_success() {
        let a = spec("a", RestartPolicy::Always);
        let d = desired(vec![a.clone()]);
        let at = 10 * S;
        let actual = with(vec![(a.clone(), exited(Some(0), at), 3)]); // backoff(3) = 8 s
        assert_eq!(r(&d, &actual, &YES, at + 7 * S), vec![]);
        let st = status_of(&d, &actual, &YES, &NONE);
        assert_eq!(st.workloads[0].phase, Phase::Pending);
        assert!(
            st.workloads[0]
                .message
                .contains("restarting after 8s back-off"),
            "{:?}",
            st.workloads[0]
        );
        assert_eq!(
            r(&d, &actual, &YES, at + 8 * S),
            vec![Action::Restart(a.clone())]
        );
        // Blob vanished meanwhile: fetch it first.
        assert_eq!(
            r(&d, &actual, &NO, at + 8 * S),
            vec![Action::FetchBlob(a.module)]
        );
    }

    #[test]
    fn on_failure_restarts_failures_only() {
        let a = spec("a", RestartPolicy::OnFailure);
        let d = desired(vec![a.clone()]);
        let failed = with(vec![(a.clone(), exited(Some(2), S), 0)]);
        assert_eq!(r(&d, &failed, &YES, S + S / 2), vec![]);
        assert_eq!(
            r(&d, &failed, &YES, 2 * S),
            vec![Action::Restart(a.clone())]
        );
        let trapped = with(vec![(a.clone(), exited(None, S), 0)]);
        assert_eq!(
            r(&d, &trapped, &YES, 2 * S),
            vec![Action::Restart(a.clone())]
        );
        let ok = with(vec![(a.clone(), exited(Some(0), S), 1)]);
        assert_eq!(r(&d, &ok, &YES, 1000 * S), vec![]);
        let st = status_of(&d, &ok, &YES, &NONE);
        assert_eq!(
            (st.workloads[0].phase, st.workloads[0].exit_code),
            (Phase::Succeeded, Some(0))
        );
    }

    #[test]
    fn never_keeps_failed() {
        let a = spec("a", RestartPolicy::Never);
        let d = desired(vec![a.clone()]);
        let failed = with(vec![(a.clone(), exited(Some(3), S), 0)]);
        assert_eq!(r(&d, &failed, &YES, 1000 * S), vec![]);
        let st = &status_of(&d, &failed, &YES, &NONE).workloads[0];
        assert_eq!(
            (st.phase, st.exit_code, st.message.as_str()),
            (Phase::Failed, Some(3), "boom")
        );
        let ok = with(vec![(a, exited(Some(0), S), 0)]);
        assert_eq!(
            status_of(&d, &ok, &YES, &NONE).workloads[0].phase,
            Phase::Succeeded
        );
    }

    #[test]
    fn status_is_sorted_and_only_for_desired() {
        let (a, b) = (
            spec("a", RestartPolicy::Always),
            spec("b", RestartPolicy::Always),
        );
        let stale = spec("zz", RestartPolicy::Always);
        let actual = with(vec![(stale, RunState::Running, 0)]);
        let st = status_of(&desired(vec![b, a]), &actual, &YES, &NONE);
        let names: Vec<_> = st.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(
            st.workloads
                .iter()
                .all(|w| w.phase == Phase::Pending && w.message == "starting")
        );
    }

    #[test]
    fn back_off_resets_after_ten_minutes_of_healthy_running() {
        let a = spec("a", RestartPolicy::Always);
        let d = desired(vec![a.clone()]);
        // A crash streak of 5: the next restart waits 32 s...
        let mut actual = with(vec![(a.clone(), exited(Some(1), 100 * S), 5)]);
        assert_eq!(r(&d, &actual, &YES, 131 * S), vec![]);
        assert_eq!(
            r(&d, &actual, &YES, 132 * S),
            vec![Action::Restart(a.clone())]
        );
        // ...but after a run of ten minutes, a crash is the first of a new streak.
        let entry = actual.workloads.get_mut("a").unwrap();
        *entry = entry.restarted(a.clone(), 200 * S);
        assert_eq!((entry.restarts, entry.streak), (6, 6));
        entry.run = RunState::Exited {
            exit: Exit::failure(Some(1), "boom"),
            at: 200 * S + BACKOFF_RESET,
        };
        let crashed_at = 200 * S + BACKOFF_RESET;
        assert_eq!(
            r(&d, &actual, &YES, crashed_at + S),
            vec![Action::Restart(a.clone())],
            "1 s back-off, not 60 s"
        );
        let st = status_of(&d, &actual, &YES, &NONE);
        assert!(
            st.workloads[0].message.contains("after 1s back-off"),
            "{:?}",
            st.workloads[0]
        );
        assert_eq!(
            st.workloads[0].restarts, 6,
            "the count itself is never reset"
        );
        let next = actual.workloads["a"].restarted(a, crashed_at + S);
        assert_eq!((next.restarts, next.streak), (7, 1));
    }

    /// Carries out actions the way the agent loop does (starts run, stops forget, fetches
    /// bring the blob), with nothing exiting meanwhile.
    fn execute(actions: &[Action], actual: &mut Actual, blobs: &mut Vec<Digest>, now: Duration) {
        for action in actions {
            match action {
                Action::FetchBlob(m) => blobs.push(m.digest),
                Action::Start(s) => {
                    actual
                        .workloads
                        .insert(s.name.clone(), WorkloadActual::started(s.clone(), now));
                }
                Action::Restart(s) => {
                    let next = actual.workloads[&s.name].restarted(s.clone(), now);
                    actual.workloads.insert(s.name.clone(), next);
                }
                Action::Stop(n) => {
                    actual.workloads.remove(n);
                }
            }
        }
    }

    #[test]
    fn carrying_out_the_actions_converges_from_every_starting_point() {
        let variant = |name: &str, v: u8| {
            let mut s = spec(name, RestartPolicy::Always);
            s.module.digest = Digest([v; 32]);
            s.revision = u64::from(v);
            s
        };
        let run_states = [
            None,
            Some((RunState::Running, 0)),
            Some((exited(Some(1), S), 3)),
            Some((exited(Some(0), S), 0)),
        ];
        let mut cases = 0;
        for desired_mask in 0..8u8 {
            for actual_variant in [1u8, 2] {
                for (ai, a_state) in run_states.iter().enumerate() {
                    for (bi, b_state) in run_states.iter().enumerate() {
                        let names = ["a", "b", "c"];
                        let d = desired(
                            (0..3)
                                .filter(|i| desired_mask & (1 << i) != 0)
                                .map(|i| variant(names[i], 1))
                                .collect(),
                        );
                        let mut entries = vec![];
                        if let Some((run, r)) = a_state {
                            entries.push((variant("a", actual_variant), run.clone(), *r));
                        }
                        if let Some((run, r)) = b_state {
                            entries.push((variant("b", 1), run.clone(), *r));
                        }
                        let mut actual = with(entries);
                        let mut blobs = vec![Digest([2; 32])];
                        // Late enough that every back-off has passed.
                        let now = 1000 * S;
                        for _ in 0..3 {
                            let present = |d: &Digest| blobs.contains(d);
                            let actions = r(&d, &actual, &present, now);
                            execute(&actions, &mut actual, &mut blobs, now);
                        }
                        let present = |d: &Digest| blobs.contains(d);
                        let left = r(&d, &actual, &present, now);
                        assert_eq!(
                            left,
                            vec![],
                            "case {desired_mask}/{actual_variant}/{ai}/{bi}"
                        );
                        let st = status_of(&d, &actual, &present, &NONE);
                        assert!(
                            st.workloads.iter().all(|w| w.phase == Phase::Running),
                            "case {desired_mask}/{actual_variant}/{ai}/{bi}: {st:?}"
                        );
                        assert_eq!(st.workloads.len(), d.workloads.len());
                        assert_eq!(
                            actual.workloads.len(),
                            d.workloads.len(),
                            "nothing extra runs"
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 8 * 2 * 4 * 4);
    }
}
