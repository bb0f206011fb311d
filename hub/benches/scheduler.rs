//! `scheduler::schedule` on N nodes × M deployments, N in {100, 1,000, 10,000} and M in
//! {1, 10, 100}, each deployment asking for N/10 replicas (at least one): `cold`, with no
//! current placement (every replica is placed, as when a hub first sees its fleet), and
//! `steady`, with the current placement fed back (nothing moves). Plus one every-node
//! deployment (a DaemonSet) on 10,000 nodes, cold and steady.
//!
//! Why: the controller re-runs the whole placement on every change it sees (a deployment,
//! a node's presence, a tick), so `steady` is what the hub pays per event at a fleet's size,
//! and `cold` bounds a hub's start and a mass reconnect.
//!
//! Cold placement scans every eligible node for each new replica (O(replicas × nodes)), so
//! the cold cases of 1,000 × 100 (2 s per iteration here), 10,000 × 10 (16 s) and
//! 10,000 × 100 (minutes) are left out; 10,000 × 1 (about 1 s) is kept as the largest.
//!
//! Run: `cargo bench -p wasmfleet-hub --bench scheduler` (`-- --quick` for a short run).

mod fleet;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use wasmfleet_hub::model::deployment::PlacementPolicy;
use wasmfleet_hub::model::{DeploymentRecord, NodeName, NodeRecord};
use wasmfleet_hub::scheduler::{Inputs, Placement, schedule};

/// Cold cases left out for taking well over a second per iteration.
const COLD_SKIPPED: [(usize, usize); 3] = [(1_000, 100), (10_000, 10), (10_000, 100)];

type Deployments = BTreeMap<String, DeploymentRecord>;
type Nodes = BTreeMap<NodeName, Arc<NodeRecord>>;
type Current = BTreeMap<String, NodeName>;

fn run(deployments: &Deployments, nodes: &Nodes, current: &Current) -> Placement {
    schedule(Inputs {
        deployments,
        nodes,
        current,
        now_ms: 1_000,
        not_ready_grace_ms: 60_000,
    })
}

/// `m` deployments of `replicas` replicas each.
fn replicated(m: usize, replicas: u32) -> Deployments {
    (0..m)
        .map(|j| {
            let name = format!("app-{j:03}");
            let spec = fleet::spec(replicas, PlacementPolicy::Replicas);
            (name.clone(), fleet::record(&name, spec))
        })
        .collect()
}

/// A placement the scheduler keeps as it is: replicas dealt round-robin over the nodes, so
/// each deployment's land on distinct nodes and every node holds about as many. Built by
/// hand because the scheduler's own cold pass is too slow for the largest cases.
fn dealt(deployments: &Deployments, nodes: &Nodes) -> Current {
    let names: Vec<&NodeName> = nodes.keys().collect();
    let mut slot = 0;
    let mut current = Current::new();
    for d in deployments.values() {
        for ordinal in 0..d.spec.replicas {
            current.insert(d.workload_name(ordinal), names[slot % names.len()].clone());
            slot += 1;
        }
    }
    current
}

/// Benchmarks one pass as `id`, after checking (and timing) what it yields.
fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    (deployments, nodes, current): (&Deployments, &Nodes, &Current),
    check: impl FnOnce(&Placement),
) {
    let start = Instant::now();
    check(&run(deployments, nodes, current));
    fleet::fit(group, start.elapsed());
    group.bench_function(id, |b| {
        b.iter(|| run(black_box(deployments), nodes, current))
    });
}

fn replicas(c: &mut Criterion) {
    let fleets: Vec<(usize, Nodes)> = [100, 1_000, 10_000].map(|n| (n, fleet::nodes(n))).into();
    let empty = Current::new();
    for (kind, cold) in [("cold", true), ("steady", false)] {
        let mut group = c.benchmark_group(kind);
        for (n, nodes) in &fleets {
            for m in [1, 10, 100] {
                if cold && COLD_SKIPPED.contains(&(*n, m)) {
                    continue;
                }
                let deps = replicated(m, (*n as u32 / 10).max(1));
                let current = if cold {
                    empty.clone()
                } else {
                    dealt(&deps, nodes)
                };
                let wanted: usize = deps.values().map(|d| d.spec.replicas as usize).sum();
                bench(
                    &mut group,
                    &format!("{n}x{m}"),
                    (&deps, nodes, &current),
                    |p| {
                        assert_eq!(p.assigned.len(), wanted, "every replica placed");
                        assert!(cold || p.assigned == current, "steady: nothing moves");
                    },
                );
            }
        }
        group.finish();
    }
}

fn every_node(c: &mut Criterion) {
    let nodes = fleet::nodes(10_000);
    let spec = fleet::spec(0, PlacementPolicy::EveryNode);
    let deps = Deployments::from([("agent".into(), fleet::record("agent", spec))]);
    // Names hash node names, salted where two collide: the scheduler's own binding.
    let bound = run(&deps, &nodes, &Current::new()).assigned;
    assert_eq!(bound.len(), nodes.len(), "one workload per node");
    let mut group = c.benchmark_group("every_node");
    for (kind, current) in [("cold", Current::new()), ("steady", bound.clone())] {
        bench(
            &mut group,
            &format!("{kind}/10000"),
            (&deps, &nodes, &current),
            |p| {
                assert_eq!(p.assigned, bound, "the same binding, cold or steady");
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Ten samples: the cases run from microseconds to a second, and the statistics need no
    // more to show a regression of the size that matters here.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    targets = replicas, every_node
}
criterion_main!(benches);
