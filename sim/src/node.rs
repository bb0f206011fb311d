//! One simulated node: the real agent's decision logic (`wasmfleet-node` admission, reconcile
//! and status) with instances that start at once and every module already on disk (the
//! "cached module" case). No wasmtime, no disk: what is left is the protocol work a node does.

use std::time::Duration;

use wasmfleet_node::admission::{NodeOffer, admit};
use wasmfleet_node::reconcile::{Action, Actual, WorkloadActual, reconcile, status};
use wasmfleet_proto::{
    Capacity, DesiredState, DeviceClass, Hello, Label, NodeStatus, Phase, decode,
};

/// Capacity every simulated node announces.
const OFFER: NodeOffer = NodeOffer {
    max_workloads: 32,
    memory_bytes: 1 << 30,
    compiler: false,
};

/// A simulated node's state.
#[derive(Debug)]
pub struct SimNode {
    desired: DesiredState,
    actual: Actual,
    last_status: Option<NodeStatus>,
}

impl SimNode {
    /// A node that has run nothing yet.
    pub fn new() -> SimNode {
        SimNode {
            desired: DesiredState::default(),
            actual: Actual::default(),
            last_status: None,
        }
    }

    /// What it announces: a Linux node of this machine's engine profile, so the hub sends it
    /// the artifact it compiled for its own architecture.
    pub fn hello() -> Hello {
        Hello {
            agent_version: concat!("sim-", env!("CARGO_PKG_VERSION")).into(),
            device_class: DeviceClass::Linux,
            capacity: Capacity {
                memory_bytes: OFFER.memory_bytes,
                max_workloads: OFFER.max_workloads,
            },
            labels: vec![Label {
                key: "wasmfleet.dev/simulated".into(),
                value: "true".into(),
            }],
            engine: wasmfleet_common::engine::host_profile(false),
            devices: vec![],
        }
    }

    /// A desired-state payload arrived: takes it if it supersedes the one held, converges,
    /// and returns the status to publish if it changed. Undecodable input is ignored.
    pub fn on_desired(&mut self, payload: &[u8], now: Duration) -> Option<NodeStatus> {
        let state: DesiredState = decode(payload).ok()?;
        if !state.supersedes(&self.desired) {
            return None;
        }
        self.desired = state;
        self.converge(now)
    }

    /// The status to publish now, even if it did not change (after a reconnect).
    pub fn status_now(&mut self, now: Duration) -> NodeStatus {
        self.last_status = None;
        self.converge(now).unwrap_or_default()
    }

    fn converge(&mut self, now: Duration) -> Option<NodeStatus> {
        let verdicts = admit(&self.desired, &OFFER);
        for action in reconcile(&self.desired, &self.actual, &verdicts, &|_| true, now) {
            match action {
                Action::FetchBlob(_) => {}
                Action::Start(spec) => {
                    let w = WorkloadActual::started(spec, now);
                    self.actual.workloads.insert(w.spec.name.clone(), w);
                }
                Action::Restart(spec) => {
                    if let Some(old) = self.actual.workloads.get(&spec.name) {
                        let w = old.restarted(spec, now);
                        self.actual.workloads.insert(w.spec.name.clone(), w);
                    }
                }
                Action::Stop(name) => {
                    self.actual.workloads.remove(&name);
                }
            }
        }
        let s = status(&self.desired, &self.actual, &verdicts, &|_| true, &|_| None);
        if self.last_status.as_ref() == Some(&s) {
            return None;
        }
        self.last_status = Some(s.clone());
        Some(s)
    }
}

/// Whether `status` shows a workload of `deployment` Running.
pub fn runs(status: &NodeStatus, deployment: &str) -> bool {
    status.workloads.iter().any(|w| {
        w.phase == Phase::Running
            && w.name
                .rsplit_once('-')
                .is_some_and(|(d, _)| d == deployment)
    })
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::{Code, Limits, ModuleRef, RestartPolicy, WorkloadSpec, encode};

    use super::*;

    fn state(generation: u64) -> DesiredState {
        let module = ModuleRef {
            digest: wasmfleet_proto::Digest([7; 32]),
            size: 10,
        };
        DesiredState {
            fleet: 1,
            generation,
            workloads: vec![WorkloadSpec {
                name: "probe-0a1b2c3d".into(),
                deployment: "probe".into(),
                revision: 1,
                module,
                args: vec![],
                env: vec![],
                limits: Limits {
                    memory_bytes: 1 << 20,
                    cpu_millis: None,
                    max_run_ms: None,
                },
                restart: RestartPolicy::Always,
                code: Code::Precompiled(module),
                namespace: "default".into(),
                config: vec![],
                capabilities: Default::default(),
            }],
        }
    }

    #[test]
    fn a_desired_state_runs_at_once_and_stale_ones_change_nothing() {
        let mut n = SimNode::new();
        let s = n.on_desired(&encode(&state(2)), Duration::ZERO).unwrap();
        assert_eq!(s.observed_generation, 2);
        assert!(runs(&s, "probe"));
        assert!(n.on_desired(&encode(&state(1)), Duration::ZERO).is_none());
        assert!(n.on_desired(b"garbage", Duration::ZERO).is_none());
        assert_eq!(n.status_now(Duration::ZERO).observed_generation, 2);
    }
}
