//! Convergence under loss, proven by deterministic simulation.
//!
//! The real controller (scheduler, reconcilers, rollouts, SQLite store in a file) and the real
//! node decision logic (`wasmfleet-node`: admission, reconcile, status) run against N simulated
//! nodes over a simulated MQTT broker, all driven by one seed. Until the network heals the
//! broker delays, duplicates and reorders every message; drops level-triggered ones (desired
//! states, statuses) at random; partitions nodes (their Last Will fires, what was in flight is
//! lost, and they reconnect later); restarts nodes (instances die, the persisted desired state
//! survives) and the hub (with its embedded broker: retained messages are lost too). Meanwhile
//! deployments are created, scaled, changed to good and to crashing modules, and deleted.
//!
//! After the heal the test runs a few minutes of simulated time and asserts that every node
//! holds and runs exactly the hub's latest desired state, that the hub saw it do so, and that
//! no rollout is left half-applied. `SIM_SEED=n cargo test -p wasmfleet-hub sim` replays one
//! seed; `SIM_SEEDS=n` runs more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use wasmfleet_node::admission::{NodeOffer, admit};
use wasmfleet_node::reconcile::{
    Action, Actual, Exit, RunState, WorkloadActual, reconcile, status,
};
use wasmfleet_proto::{
    Capacity, DesiredState, DeviceClass, Digest, Hello, NodeStatus, Presence, WorkloadSpec,
};

use crate::controller::{Config, Controller, Publish};
use crate::model::deployment::tests::spec;
use crate::model::rollout::{RolloutPhase, RolloutStrategy, Share};
use crate::model::{ArtifactState, DeploymentSpec, profile_key};
use crate::store::SqliteStore;

const STEP_MS: u64 = 100;
const CHAOS_MS: u64 = 60_000;
const SETTLE_MS: u64 = 240_000;
const STATUS_REFRESH_MS: u64 = 30_000;
const TICK_MS: u64 = 1_000;

/// Modules: the simulated nodes run any module but this one, which traps at start.
const GOOD: [u8; 32] = [0x11; 32];
const GOOD2: [u8; 32] = [0x22; 32];
const BAD: [u8; 32] = [0xBB; 32];

#[derive(Debug, Clone)]
enum Msg {
    /// Hub → node.
    Desired(DesiredState),
    /// Node → hub.
    Status(NodeStatus),
    /// Node → hub (the Last Will is an `Offline`).
    Presence(Presence),
}

#[derive(Debug)]
struct InFlight {
    at: u64,
    seq: u64,
    node: usize,
    to_hub: bool,
    msg: Msg,
}

struct Node {
    name: String,
    up: bool,
    connected: bool,
    /// Back at this time (partition healed, process restarted).
    back_at: u64,
    desired: DesiredState,
    actual: Actual,
    last_status: Option<(NodeStatus, u64)>,
}

impl Node {
    fn hello(&self) -> Hello {
        Hello {
            agent_version: "sim".into(),
            device_class: DeviceClass::Linux,
            capacity: Capacity {
                memory_bytes: 1 << 30,
                max_workloads: 16,
            },
            labels: vec![],
            engine: wasmfleet_common::engine::host_profile(true),
            devices: vec![],
        }
    }

    fn offer() -> NodeOffer {
        NodeOffer {
            max_workloads: 16,
            memory_bytes: 1 << 30,
            compiler: true,
        }
    }

    /// One pass of the agent loop: reconcile, carry out the actions (a bad module exits at
    /// once with a trap), and the status to publish if it changed or is due.
    fn step(&mut self, now_ms: u64) -> Option<NodeStatus> {
        let now = Duration::from_millis(now_ms);
        let verdicts = admit(&self.desired, &Self::offer());
        for action in reconcile(&self.desired, &self.actual, &verdicts, &|_| true, now) {
            match action {
                Action::FetchBlob(_) => {}
                Action::Start(spec) => {
                    let w = run(WorkloadActual::started(spec, now), now);
                    self.actual.workloads.insert(w.spec.name.clone(), w);
                }
                Action::Restart(spec) => {
                    let old = &self.actual.workloads[&spec.name];
                    let w = run(old.restarted(spec, now), now);
                    self.actual.workloads.insert(w.spec.name.clone(), w);
                }
                Action::Stop(name) => {
                    self.actual.workloads.remove(&name);
                }
            }
        }
        let s = status(&self.desired, &self.actual, &verdicts, &|_| true, &|_| None);
        let due = self
            .last_status
            .as_ref()
            .is_none_or(|(last, at)| *last != s || now_ms >= at + STATUS_REFRESH_MS);
        if due && self.connected {
            self.last_status = Some((s.clone(), now_ms));
            return Some(s);
        }
        None
    }
}

fn run(mut w: WorkloadActual, now: Duration) -> WorkloadActual {
    if w.spec.module.digest == Digest(BAD) {
        w.run = RunState::Exited {
            exit: Exit::failure(None, "wasm trap: unreachable"),
            at: now,
        };
    }
    w
}

struct Sim {
    rng: StdRng,
    now: u64,
    seq: u64,
    hub: Option<Controller>,
    nodes: Vec<Node>,
    flight: Vec<InFlight>,
    /// The broker's retained desired states (lost when the hub, which embeds it, restarts).
    retained: BTreeMap<usize, DesiredState>,
    /// Chaos knobs for this seed.
    drop: f64,
    dup: f64,
    max_delay: u64,
    chaos: bool,
    log: Vec<String>,
    /// The first time the hub's placement lagged what a pass would give.
    stale: Option<String>,
}

impl Sim {
    fn send(&mut self, node: usize, to_hub: bool, msg: Msg) {
        let node_reachable = self.nodes[node].connected && self.hub.is_some();
        if !node_reachable {
            return;
        }
        let droppable = !matches!(msg, Msg::Presence(_));
        if self.chaos && droppable && self.rng.random_bool(self.drop) {
            return;
        }
        let copies = if self.chaos && self.rng.random_bool(self.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.chaos {
                self.rng.random_range(0..self.max_delay)
            } else {
                self.rng.random_range(0..50)
            };
            self.seq += 1;
            self.flight.push(InFlight {
                at: self.now + delay,
                seq: self.seq,
                node,
                to_hub,
                msg: msg.clone(),
            });
        }
    }

    fn publish(&mut self, publish: Vec<Publish>) {
        for p in publish {
            let Some((name, _)) = wasmfleet_proto::topic::parse_node_topic(&p.topic) else {
                continue;
            };
            let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
                continue;
            };
            let state: DesiredState = wasmfleet_proto::decode(&p.payload).expect("a desired state");
            self.retained.insert(i, state.clone());
            self.send(i, false, Msg::Desired(state));
        }
    }

    fn hub_do(&mut self, f: impl FnOnce(&mut Controller, u64) -> Vec<Publish>) {
        let now = self.now;
        if let Some(hub) = self.hub.as_mut() {
            let p = f(hub, now);
            if let Some(why) = hub.stale_placement(now) {
                self.stale.get_or_insert(why);
            }
            self.publish(p);
        }
    }

    /// A node (re)connects: the broker hands it the retained desired state; it announces
    /// itself and reports at once.
    fn connect(&mut self, i: usize) {
        if self.hub.is_none() || !self.nodes[i].up {
            return;
        }
        self.nodes[i].connected = true;
        if let Some(state) = self.retained.get(&i).cloned() {
            self.send(i, false, Msg::Desired(state));
        }
        let hello = self.nodes[i].hello();
        self.send(i, true, Msg::Presence(Presence::Online(hello)));
        self.nodes[i].last_status = None;
    }

    /// A node drops off: what was in flight to or from it is lost; the broker fires its Will.
    fn disconnect(&mut self, i: usize, back_in: u64) {
        if !self.nodes[i].connected {
            return;
        }
        self.flight.retain(|m| m.node != i);
        if self.hub.is_some() {
            let now = self.now;
            let name = self.nodes[i].name.clone();
            self.hub_do(|h, _| {
                h.on_presence(&name, Presence::Offline, now)
                    .unwrap_or_default()
            });
        }
        let n = &mut self.nodes[i];
        n.connected = false;
        n.back_at = self.now + back_in;
    }

    fn restart_hub(&mut self, store: &Path, down_for: u64) {
        self.log.push(format!("{}: hub restarts", self.now));
        self.hub = None;
        self.retained.clear();
        self.flight.clear();
        for n in &mut self.nodes {
            n.connected = false;
            n.back_at = self.now + down_for + 500;
        }
        self.now += down_for;
        let hub = Controller::load(
            Box::new(SqliteStore::open(store).expect("store")),
            Config {
                not_ready_grace_ms: 10_000,
            },
            self.now,
        )
        .expect("the hub loads its store");
        self.hub = Some(hub);
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut rest = Vec::new();
        for m in self.flight.drain(..) {
            if m.at <= now {
                due.push(m)
            } else {
                rest.push(m)
            }
        }
        self.flight = rest;
        due.sort_by_key(|m| (m.at, m.seq));
        for m in due {
            let name = self.nodes[m.node].name.clone();
            match (m.to_hub, m.msg) {
                (true, Msg::Presence(p)) => {
                    self.hub_do(|h, now| h.on_presence(&name, p, now).unwrap_or_default());
                }
                (true, Msg::Status(s)) => {
                    self.hub_do(|h, now| h.on_status(&name, s, now).unwrap_or_default());
                }
                (false, Msg::Desired(state)) => {
                    let n = &mut self.nodes[m.node];
                    if n.up && state.supersedes(&n.desired) {
                        n.desired = state;
                    }
                }
                _ => {}
            }
        }
    }
}

/// A random change of the fleet's deployments.
fn change(sim: &mut Sim) {
    let names = ["alpha", "beta", "gamma"];
    let name = names[sim.rng.random_range(0..names.len())];
    let module = [GOOD, GOOD2, BAD][sim.rng.random_range(0..3usize)];
    let mut s: DeploymentSpec = spec(sim.rng.random_range(1..=5u32));
    s.module = Digest(module).to_hex();
    s.args = vec![format!("--v{}", sim.rng.random_range(0..3))];
    s.rollout = RolloutStrategy {
        waves: vec![Share::Count(1), Share::Percent(50), Share::Percent(100)],
        healthy_for_ms: 2_000,
        max_unavailable: Share::Count(1),
        failure_threshold: 1,
        progress_deadline_ms: 20_000,
    };
    let delete = sim.rng.random_bool(0.15);
    sim.log.push(format!(
        "{}: {} {name} ({} replicas of {})",
        sim.now,
        if delete { "delete" } else { "apply" },
        s.replicas,
        &s.module[..4]
    ));
    sim.hub_do(|h, now| {
        if delete {
            return h.delete(name, now).unwrap_or_default();
        }
        let digest = Digest(module);
        let mut p = h
            .record_artifacts(
                vec![(
                    (
                        digest,
                        profile_key(&wasmfleet_common::engine::host_profile(true)),
                    ),
                    ArtifactState::Unavailable {
                        reason: "simulated".into(),
                    },
                )],
                now,
            )
            .unwrap_or_default();
        p.extend(h.apply(name, s, now).map(|(_, _, p)| p).unwrap_or_default());
        p
    });
}

fn simulate(seed: u64, nodes: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = dir.path().join("hub.db");
    // Seeded, so a seed replays exactly.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim {
        drop: f64::from(rng.random_range(0..30u8)) / 100.0,
        dup: f64::from(rng.random_range(0..20u8)) / 100.0,
        max_delay: 1 + rng.random_range(0..2_000),
        rng,
        now: 0,
        seq: 0,
        hub: None,
        nodes: (0..nodes)
            .map(|i| Node {
                name: format!("n{i}"),
                up: true,
                connected: false,
                back_at: 0,
                desired: DesiredState::default(),
                actual: Actual::default(),
                last_status: None,
            })
            .collect(),
        flight: vec![],
        retained: BTreeMap::new(),
        chaos: true,
        log: vec![],
        stale: None,
    };
    sim.restart_hub(&store, 0);
    let mut next_tick = 0;
    while sim.now < CHAOS_MS + SETTLE_MS {
        sim.chaos = sim.now < CHAOS_MS;
        if sim.chaos {
            if sim.rng.random_bool(0.02) {
                change(&mut sim);
            }
            if sim.rng.random_bool(0.004) {
                let i = sim.rng.random_range(0..nodes);
                let back = 1_000 + sim.rng.random_range(0..20_000);
                sim.log
                    .push(format!("{}: node {i} partitioned for {back} ms", sim.now));
                sim.disconnect(i, back);
            }
            if sim.rng.random_bool(0.003) {
                let i = sim.rng.random_range(0..nodes);
                sim.log.push(format!("{}: node {i} restarts", sim.now));
                let back = 500 + sim.rng.random_range(0..5_000);
                sim.disconnect(i, back);
                sim.nodes[i].actual = Actual::default();
            }
            if sim.rng.random_bool(0.0005) {
                let down = sim.rng.random_range(0..5_000);
                sim.restart_hub(&store, down);
            }
        }
        for i in 0..nodes {
            if !sim.nodes[i].connected && sim.now >= sim.nodes[i].back_at {
                sim.connect(i);
            }
        }
        sim.deliver();
        for i in 0..nodes {
            if let Some(s) = sim.nodes[i].step(sim.now) {
                sim.send(i, true, Msg::Status(s));
            }
        }
        if sim.now >= next_tick {
            sim.hub_do(|h, now| h.tick(now).unwrap_or_default());
            next_tick = sim.now + TICK_MS;
        }
        sim.now += STEP_MS;
    }
    if std::env::var_os("SIM_VERBOSE").is_some() {
        let snap = sim
            .hub
            .as_ref()
            .map(Controller::snapshot)
            .unwrap_or_default();
        eprintln!(
            "seed {seed}: drop {:.2} dup {:.2} delay<{} ms\n{}",
            sim.drop,
            sim.dup,
            sim.max_delay,
            sim.log.join("\n")
        );
        for d in snap.deployments.values() {
            eprintln!("  {} revision {} {:?}", d.name, d.revision, d.rollout);
        }
        for (n, s) in snap.desired.iter() {
            eprintln!(
                "  {n}: generation {} {:?}",
                s.generation,
                s.workloads
                    .iter()
                    .map(|w| (&w.name, w.template.revision))
                    .collect::<Vec<_>>()
            );
        }
    }
    check(&sim).map_err(|e| format!("{e}\nhistory:\n{}", sim.log.join("\n")))
}

/// Every node runs exactly the hub's latest desired state, the hub saw it, and every rollout
/// is finished: Complete (all replicas on the revision) or Failed (all on the stable one).
fn check(sim: &Sim) -> Result<(), String> {
    if let Some(why) = &sim.stale {
        return Err(why.clone());
    }
    let hub = sim.hub.as_ref().ok_or("no hub")?;
    let snap = hub.snapshot();
    for (i, n) in sim.nodes.iter().enumerate() {
        let want = snap
            .desired
            .get(n.name.as_str())
            .map(|s| s.to_wire())
            .unwrap_or_default();
        if n.desired.workloads != want.workloads || n.desired.generation != want.generation {
            return Err(format!(
                "node {i} holds generation {} but the hub's is {}",
                n.desired.generation, want.generation
            ));
        }
        let running: BTreeSet<(String, u64)> = n
            .actual
            .workloads
            .values()
            .map(|w| (w.spec.name.clone(), w.spec.revision))
            .collect();
        let wanted: BTreeSet<(String, u64)> = want
            .workloads
            .iter()
            .map(|w: &WorkloadSpec| (w.name.clone(), w.revision))
            .collect();
        if running != wanted {
            return Err(format!(
                "node {i} runs {running:?}, its desired state says {wanted:?}"
            ));
        }
        let observed = snap
            .statuses
            .get(n.name.as_str())
            .map(|s| s.observed_generation);
        if observed != Some(want.generation) {
            return Err(format!(
                "the hub saw node {i} act on {observed:?}, not generation {}",
                want.generation
            ));
        }
    }
    for d in snap.deployments.values() {
        let Some(r) = &d.rollout else { continue };
        let revisions: BTreeSet<u64> = sim
            .nodes
            .iter()
            .flat_map(|n| n.desired.workloads.iter())
            .filter(|w| w.deployment == d.name)
            .map(|w| w.revision)
            .collect();
        let expect = match r.phase {
            RolloutPhase::Complete => BTreeSet::from([r.revision]),
            RolloutPhase::Failed => r.stable.into_iter().collect(),
            _ => {
                return Err(format!(
                    "deployment {} rollout left {:?}: {r:?}",
                    d.name, r.phase
                ));
            }
        };
        if !revisions.is_empty() && revisions != expect && r.stable.is_some() {
            return Err(format!(
                "deployment {} half-applied: revisions {revisions:?} with rollout {r:?}",
                d.name
            ));
        }
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    (1..=n).collect()
}

#[test]
fn every_node_converges_after_the_network_heals() {
    for seed in seeds() {
        if let Err(e) = simulate(seed, 6) {
            panic!(
                "seed {seed} did not converge (replay: SIM_SEED={seed} cargo test -p wasmfleet-hub --lib sim): {e}"
            );
        }
    }
}
