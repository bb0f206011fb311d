//! The controller's event handling through its public API, on a settled fleet of 1,000 and
//! 10,000 nodes (in-memory SQLite store) running two deployments: one of nodes/2 replicas
//! and one every-node. Per fleet size:
//!
//! - `status_unchanged`: a node repeats its status (the common case: agents re-send status
//!   periodically and on every step);
//! - `status_phase`: one workload of a node flips between Running and Failed (a crash loop:
//!   an event is written each time);
//! - `presence_reconnect`: a Ready node announces itself again, unchanged (an agent
//!   reconnecting after a network blip);
//! - `tick`: the periodic pass (grace periods, retries, rollouts, lagging nodes), one second
//!   after the previous one.
//!
//! Why: every MQTT report of the fleet goes through this single writer, so its per-event cost
//! at a fleet's size is the hub's throughput bound; the cheap cases must not grow with the
//! fleet.
//!
//! Setup announces every node with `on_presence`, applies the deployments and reports every
//! workload Running; the time it took is printed per fleet size (one scheduler pass per node
//! announced, so it grows with the square of the fleet).
//!
//! Run: `cargo bench -p wasmfleet-hub --bench controller` (`-- --quick` for a short run).

mod fleet;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use wasmfleet_hub::controller::{Config, Controller};
use wasmfleet_hub::model::deployment::PlacementPolicy;
use wasmfleet_hub::store::SqliteStore;
use wasmfleet_proto::{NodeStatus, Phase, Presence};

/// When setup is over (ms): later than any rollout's health window.
const SETTLED_MS: u64 = 60_000;

/// The node whose reports the cases send: it holds a replica and its every-node workload.
const NODE: usize = 0;

/// A controller of `n` Ready nodes whose workloads all run, and the status of [`NODE`].
fn settled(n: usize) -> (Controller, NodeStatus) {
    let start = Instant::now();
    let store = SqliteStore::in_memory().expect("in-memory store");
    let mut c = Controller::load(Box::new(store), Config::default(), 0).expect("empty store");
    let mut desired = BTreeMap::new();
    for i in 0..n {
        let hello = Presence::Online(fleet::hello(i));
        let publish = c.on_presence(&fleet::node_name(i), hello, 1).expect("node");
        desired.extend(fleet::desired_states(publish));
    }
    let announced = start.elapsed();
    let start = Instant::now();
    for (name, spec) in [
        (
            "service",
            fleet::spec(n as u32 / 2, PlacementPolicy::Replicas),
        ),
        ("agent", fleet::spec(0, PlacementPolicy::EveryNode)),
    ] {
        desired.extend(fleet::desired_states(
            c.apply(name, spec, 2).expect("valid spec").2,
        ));
    }
    let applied = start.elapsed();
    let start = Instant::now();
    for (node, state) in &desired {
        let publish = c.on_status(node, fleet::running(state), 3).expect("status");
        assert!(publish.is_empty(), "{node} acted on what it was sent");
    }
    c.tick(SETTLED_MS).expect("tick");
    let node = fleet::node_name(NODE);
    let status = fleet::running(&desired[&node]);
    let workloads: usize = desired.values().map(|d| d.workloads.len()).sum();
    assert_eq!(
        workloads,
        n / 2 + n,
        "every replica and every-node workload placed"
    );
    assert!(
        status.workloads.len() >= 2,
        "{node} runs a replica and its own workload"
    );
    eprintln!(
        "setup of {n} nodes: announcing them {:.1} s, applying {:.1} s, reporting {:.1} s",
        announced.as_secs_f64(),
        applied.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    (c, status)
}

/// Benchmarks `f` as `id`, called with a time `step_ms` later each iteration.
fn bench<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: String,
    now: &mut u64,
    step_ms: u64,
    mut f: impl FnMut(u64) -> T,
) {
    let start = Instant::now();
    *now += step_ms;
    black_box(f(*now));
    fleet::fit(group, start.elapsed());
    group.bench_function(id, |b| {
        b.iter(|| {
            *now += step_ms;
            f(*now)
        })
    });
}

fn controller(c: &mut Criterion) {
    let mut group = c.benchmark_group("controller");
    for n in [1_000, 10_000] {
        let (mut ctl, steady) = settled(n);
        let node = fleet::node_name(NODE);
        let mut now = SETTLED_MS;
        bench(
            &mut group,
            format!("status_unchanged/{n}"),
            &mut now,
            1,
            |t| ctl.on_status(&node, steady.clone(), t).expect("status"),
        );
        let mut crashes = 0;
        bench(&mut group, format!("status_phase/{n}"), &mut now, 1, |t| {
            let mut status = steady.clone();
            crashes += 1;
            let w = &mut status.workloads[0];
            w.restarts = crashes / 2;
            if crashes % 2 == 1 {
                (w.phase, w.exit_code, w.message) = (Phase::Failed, Some(1), "exit 1".into());
            }
            ctl.on_status(&node, status, t).expect("status")
        });
        let hello = Presence::Online(fleet::hello(NODE));
        now += 1;
        let again = ctl
            .on_presence(&node, hello.clone(), now)
            .expect("presence");
        assert_eq!(
            again.len(),
            1,
            "a reconnecting node is sent its desired state again"
        );
        bench(
            &mut group,
            format!("presence_reconnect/{n}"),
            &mut now,
            1,
            |t| ctl.on_presence(&node, hello.clone(), t).expect("presence"),
        );
        bench(&mut group, format!("tick/{n}"), &mut now, 1_000, |t| {
            ctl.tick(t).expect("tick")
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Ten samples: fleets take long to set up, and the cases run from microseconds to
    // tens of milliseconds.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    targets = controller
}
criterion_main!(benches);
