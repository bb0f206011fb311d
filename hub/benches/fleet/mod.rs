//! Fleets for the hub's benchmarks, built from public types only: nodes as agents announce
//! them, and deployments as `wasmfleet apply` stores them; and how long to sample a case.
//! Each bench uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};

use wasmfleet_hub::controller::Publish;
use wasmfleet_hub::model::capabilities::{CapabilitiesSpec, DEFAULT_NAMESPACE};
use wasmfleet_hub::model::deployment::{PlacementPolicy, RestartPolicyName};
use wasmfleet_hub::model::rollout::RolloutStrategy;
use wasmfleet_hub::model::{DeploymentRecord, DeploymentSpec, NodeName, NodeRecord, Scheduling};
use wasmfleet_proto::{
    Capacity, DesiredState, DeviceClass, EngineProfile, Hello, Label, NodeStatus, Phase,
    WorkloadStatus,
};

/// Every workload of `state` Running, as its agent reports it.
pub fn running(state: &DesiredState) -> NodeStatus {
    NodeStatus {
        observed_fleet: state.fleet,
        observed_generation: state.generation,
        workloads: state
            .workloads
            .iter()
            .map(|w| WorkloadStatus {
                name: w.name.clone(),
                revision: w.revision,
                phase: Phase::Running,
                restarts: 0,
                exit_code: None,
                message: String::new(),
            })
            .collect(),
    }
}

/// The desired states among the controller's publications, by node, in their order.
pub fn desired_states(publish: Vec<Publish>) -> impl Iterator<Item = (String, DesiredState)> {
    publish
        .into_iter()
        .filter(|p| p.topic.ends_with("/desired"))
        .map(|p| {
            let node = p.topic.split('/').nth(3).unwrap_or_default().to_owned();
            let state = wasmfleet_proto::decode(&p.payload).expect("the hub's own frame");
            (node, state)
        })
}

/// Name of node `i`: zero-padded, so name order is index order.
pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// What a Linux gateway announces: 2 GiB and 128 slots, room for every case's workloads,
/// and one of four `zone` labels, so selectors have something to read.
pub fn hello(i: usize) -> Hello {
    Hello {
        agent_version: "0.1.0".into(),
        device_class: DeviceClass::Linux,
        capacity: Capacity {
            memory_bytes: 2 << 30,
            max_workloads: 128,
        },
        labels: vec![Label {
            key: "zone".into(),
            value: format!("z{}", i % 4),
        }],
        engine: EngineProfile {
            target: "x86_64-unknown-linux-gnu".into(),
            cpu_features: vec!["has_avx2".into()],
            wasmtime: "50.0.1".into(),
            settings: 0x5e77_1095,
            compiler: false,
        },
        devices: vec![],
    }
}

/// `n` Ready, schedulable nodes, by name.
pub fn nodes(n: usize) -> BTreeMap<NodeName, Arc<NodeRecord>> {
    (0..n)
        .map(|i| {
            let rec = NodeRecord {
                name: node_name(i).into(),
                hello: hello(i).into(),
                ready: true,
                since_ms: 0,
                created_ms: 0,
                scheduling: Scheduling::Enabled,
            };
            (rec.name.clone(), Arc::new(rec))
        })
        .collect()
}

/// A small service: 16 MiB per replica, a couple of args, default rollout.
pub fn spec(replicas: u32, placement: PlacementPolicy) -> DeploymentSpec {
    DeploymentSpec {
        module: "ab".repeat(32),
        module_size: 48_213,
        replicas,
        args: vec!["--interval".into(), "5s".into()],
        env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
        memory_bytes: 16 << 20,
        cpu_millis: Some(200),
        max_run_ms: None,
        restart_policy: RestartPolicyName::Always,
        namespace: DEFAULT_NAMESPACE.into(),
        config: BTreeMap::new(),
        capabilities: CapabilitiesSpec::default(),
        node_selector: BTreeMap::new(),
        node_affinity: Vec::new(),
        placement,
        rollout: RolloutStrategy::default(),
    }
}

/// The stored record of a deployment `name` of `spec`, at its first revision.
pub fn record(name: &str, spec: DeploymentSpec) -> DeploymentRecord {
    DeploymentRecord {
        name: name.into(),
        spec,
        generation: 1,
        revision: 1,
        created_ms: 0,
        updated_ms: 0,
        rollout: None,
        history: vec![],
    }
}

/// Fits criterion's ten samples to a case that took `once` for one iteration: slow cases
/// sample flat (ten iterations), fast ones linearly (55), in a window just long enough, so
/// no case warns and none takes longer than it must.
pub fn fit(group: &mut BenchmarkGroup<'_, WallTime>, once: Duration) {
    let (mode, iterations) = if once > Duration::from_millis(10) {
        (SamplingMode::Flat, 12)
    } else {
        (SamplingMode::Auto, 60)
    };
    group.sampling_mode(mode);
    group.measurement_time((once * iterations).max(Duration::from_secs(1)));
}
