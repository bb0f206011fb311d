//! The agent's decisions for one desired state of 1, 16 and 64 workloads: admission
//! (`admit`), the diff against what runs (`reconcile`) and the report (`status`), each in the
//! steady state (everything runs as desired: nothing to do) and after a full change (a new
//! revision of every workload: stop and start each).
//!
//! Why: the agent runs all three on every step (every message, exit and tick), and the same
//! code runs on microcontrollers, where a step's cost is the chip's time; the steady state is
//! by far the common case and should cost next to nothing.
//!
//! Run: `cargo bench -p wasmfleet-node --bench reconcile` (`-- --quick` for a short run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wasmfleet_node::reconcile::Verdicts;
use wasmfleet_node::{Actual, NodeOffer, WorkloadActual, admit, reconcile, status};
use wasmfleet_proto::{
    Capabilities, Code, DesiredState, Digest, Limits, ModuleRef, RestartPolicy, WorkloadSpec,
};

/// A node with room for every case's workloads and no compiler (it runs the hub's artifacts).
const OFFER: NodeOffer = NodeOffer {
    max_workloads: 128,
    memory_bytes: 4 << 30,
    compiler: false,
};

/// Workload `i` at `revision`: each revision runs another artifact.
fn spec(i: usize, revision: u64) -> WorkloadSpec {
    let artifact = Digest([revision as u8; 32]);
    WorkloadSpec {
        name: format!("app-{i:02}-0"),
        deployment: format!("app-{i:02}"),
        revision,
        module: ModuleRef {
            digest: Digest([0xab; 32]),
            size: 48_213,
        },
        args: vec!["--interval".into(), "5s".into()],
        env: vec![],
        limits: Limits {
            memory_bytes: 16 << 20,
            cpu_millis: Some(200),
            max_run_ms: None,
        },
        restart: RestartPolicy::Always,
        code: Code::Precompiled(ModuleRef {
            digest: artifact,
            size: 131_072,
        }),
        namespace: "default".into(),
        config: vec![],
        capabilities: Capabilities::default(),
    }
}

fn desired(workloads: usize, revision: u64) -> DesiredState {
    DesiredState {
        fleet: 7,
        generation: revision,
        workloads: (0..workloads).map(|i| spec(i, revision)).collect(),
    }
}

/// Every workload of `state` running since time zero.
fn running(state: &DesiredState) -> Actual {
    Actual {
        workloads: state
            .workloads
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    WorkloadActual::started(s.clone(), Duration::ZERO),
                )
            })
            .collect(),
    }
}

/// One size's inputs: the desired state the node runs (steady) or has just received
/// (change), with its verdicts, and the instances that run now.
struct Case {
    n: usize,
    actual: Actual,
    desired: [(DesiredState, Verdicts); 2],
}

const KINDS: [&str; 2] = ["steady", "change"];

fn case(n: usize) -> Case {
    let old = desired(n, 1);
    let new = desired(n, 2);
    Case {
        n,
        actual: running(&old),
        desired: [old, new].map(|d| {
            let v = admit(&d, &OFFER);
            (d, v)
        }),
    }
}

fn agent(c: &mut Criterion) {
    let now = Duration::from_secs(3_600);
    // Every blob is in the local store: the change case stops and starts, it does not fetch.
    let present = |_: &Digest| true;
    let no_problem = |_: &Digest| None::<String>;
    let cases: Vec<Case> = [1, 16, 64].map(case).into();

    let mut group = c.benchmark_group("admit");
    for case in &cases {
        let d = &case.desired[0].0;
        group.bench_function(BenchmarkId::from_parameter(case.n), |b| {
            b.iter(|| admit(black_box(d), &OFFER))
        });
    }
    group.finish();
    for (k, kind) in KINDS.iter().enumerate() {
        let mut group = c.benchmark_group(format!("reconcile/{kind}"));
        for case in &cases {
            let (d, v) = &case.desired[k];
            let actions = reconcile(d, &case.actual, v, &present, now).len();
            assert_eq!(
                actions,
                k * 2 * case.n,
                "{kind}: no action, or a stop and a start each"
            );
            group.bench_function(BenchmarkId::from_parameter(case.n), |b| {
                b.iter(|| reconcile(black_box(d), &case.actual, v, &present, now))
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("status/{kind}"));
        for case in &cases {
            let (d, v) = &case.desired[k];
            group.bench_function(BenchmarkId::from_parameter(case.n), |b| {
                b.iter(|| status(black_box(d), &case.actual, v, &present, &no_problem))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Microseconds per call at most: short windows are precise enough.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = agent
}
criterion_main!(benches);
