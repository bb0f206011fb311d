//! Property tests of placement over random fleets: capacity, selection, determinism,
//! stability and every-node coverage, each judged by an oracle written apart from the
//! scheduler (labels, expressions and capacity are recomputed here from the inputs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use wasmfleet_proto::{DeviceClass, Label};

use super::tests::{deployment, node};
use super::*;
use crate::model::deployment::{MatchExpression, Operator, deployment_of_workload};

const NOW: u64 = 100_000;
const GRACE: u64 = 30_000;
const MI: u64 = 1 << 20;

fn run(
    deployments: &BTreeMap<String, DeploymentRecord>,
    nodes: &BTreeMap<NodeName, Arc<NodeRecord>>,
    current: &BTreeMap<String, NodeName>,
) -> Placement {
    schedule(Inputs {
        deployments,
        nodes,
        current,
        now_ms: NOW,
        not_ready_grace_ms: GRACE,
    })
}

fn arb_node(name: String) -> impl Strategy<Value = NodeRecord> {
    (
        (
            prop::sample::select(vec![0, 8 * MI, 32 * MI, 64 * MI, 256 * MI]),
            0u32..5,
            prop::option::of(prop::sample::select(vec!["a", "b"])),
            any::<bool>(),
            prop::sample::subsequence(vec!["i2c-1", "gpio:17"], 0..=2),
        ),
        (
            prop::bool::weighted(0.8),
            prop::sample::select(vec![0, 80_000, 95_000]),
            prop::sample::select(vec![
                Scheduling::Enabled,
                Scheduling::Enabled,
                Scheduling::Cordoned,
                Scheduling::Drained,
            ]),
            prop::bool::weighted(0.15),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |((memory, slots, site, tier, devices), (ready, since, sched, is_mcu, arm))| {
                let mut n = node(&name, ready, memory, slots);
                n.since_ms = since;
                n.scheduling = sched;
                Arc::make_mut(&mut n.hello).devices =
                    devices.into_iter().map(String::from).collect();
                let mut labels = vec![];
                if let Some(site) = site {
                    labels.push(("site", site));
                }
                if tier {
                    labels.push(("tier", "x"));
                }
                Arc::make_mut(&mut n.hello).engine.target = if arm {
                    "aarch64-unknown-linux-gnu"
                } else {
                    "x86_64-unknown-linux-gnu"
                }
                .into();
                if is_mcu {
                    Arc::make_mut(&mut n.hello).device_class = DeviceClass::Mcu;
                    Arc::make_mut(&mut n.hello).engine.target = "pulley32".into();
                    labels.push((DEVICE_CLASS_LABEL, "mcu"));
                }
                Arc::make_mut(&mut n.hello).labels = labels
                    .into_iter()
                    .map(|(k, v)| Label {
                        key: k.into(),
                        value: v.into(),
                    })
                    .collect();
                n
            },
        )
}

fn exprs() -> Vec<MatchExpression> {
    let e = |key: &str, operator, values: &[&str]| MatchExpression {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    vec![
        e("site", Operator::In, &["a"]),
        e("site", Operator::NotIn, &["b"]),
        e("tier", Operator::Exists, &[]),
        e("tier", Operator::DoesNotExist, &[]),
        e(ARCH_LABEL, Operator::In, &["aarch64", "pulley32"]),
        e(DEVICE_CLASS_LABEL, Operator::In, &["mcu", "linux"]),
        e(NODE_LABEL, Operator::NotIn, &["n0"]),
    ]
}

fn arb_deployment(name: String) -> impl Strategy<Value = DeploymentRecord> {
    (
        0u32..5,
        prop::sample::select(vec![4 * MI, 16 * MI, 48 * MI]),
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::bool::weighted(0.1),
        prop::sample::subsequence(exprs(), 0..=2),
        prop::sample::subsequence(vec!["i2c-1".to_string()], 0..=1),
        prop::sample::subsequence(vec![17u32], 0..=1),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            move |(replicas, memory, site, mcu, affinity, i2c, gpio, every)| {
                let mut d = deployment(&name, replicas);
                d.spec.memory_bytes = memory;
                if let Some(site) = site {
                    d.spec.node_selector.insert("site".into(), site.into());
                }
                if mcu {
                    d.spec
                        .node_selector
                        .insert(DEVICE_CLASS_LABEL.into(), "mcu".into());
                }
                d.spec.node_affinity = affinity;
                d.spec.capabilities.i2c = i2c;
                d.spec.capabilities.gpio = gpio;
                if every {
                    d.spec.placement = PlacementPolicy::EveryNode;
                    d.spec.replicas = 0;
                }
                d
            },
        )
}

/// A fleet: nodes, deployments and a random (possibly invalid) current placement.
#[derive(Debug, Clone)]
struct Fleet {
    nodes: BTreeMap<NodeName, Arc<NodeRecord>>,
    deployments: BTreeMap<String, DeploymentRecord>,
    current: BTreeMap<String, NodeName>,
}

fn arb_fleet() -> impl Strategy<Value = Fleet> {
    let nodes = (1usize..7).prop_flat_map(|n| {
        (0..n)
            .map(|i| arb_node(format!("n{i}")))
            .collect::<Vec<_>>()
    });
    let deps = (0usize..4).prop_flat_map(|n| {
        (0..n)
            .map(|i| arb_deployment(format!("d{i}")))
            .collect::<Vec<_>>()
    });
    let picks = prop::collection::vec((0usize..4, 0usize..6, 0usize..8), 0..12);
    (nodes, deps, picks).prop_map(|(nodes, deps, picks)| {
        let names: Vec<NodeName> = nodes.iter().map(|n| n.name.clone()).collect();
        let mut current = BTreeMap::new();
        for (d, slot, n) in picks {
            let Some(dep) = deps.get(d) else { continue };
            let target = names.get(n).cloned().unwrap_or_else(|| "ghost".into());
            let workload = match dep.spec.placement {
                PlacementPolicy::EveryNode => {
                    every_node_workload_name(&dep.name, &names[slot % names.len()])
                }
                PlacementPolicy::Replicas => dep.workload_name(slot as u32),
            };
            current.insert(workload, target);
        }
        Fleet {
            nodes: nodes
                .into_iter()
                .map(|n| (n.name.clone(), Arc::new(n)))
                .collect(),
            deployments: deps.into_iter().map(|d| (d.name.clone(), d)).collect(),
            current,
        }
    })
}

/// The labels a node is selected by, recomputed: announced, then built-ins over them.
fn oracle_labels(n: &NodeRecord) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for l in &n.hello.labels {
        let v = labels
            .entry(l.key.clone())
            .or_insert_with(|| l.value.clone());
        if l.value < *v {
            *v = l.value.clone();
        }
    }
    labels.insert(NODE_LABEL.into(), n.name.to_string());
    let class = if n.hello.device_class == DeviceClass::Mcu {
        "mcu"
    } else {
        "linux"
    };
    labels.insert(DEVICE_CLASS_LABEL.into(), class.into());
    let arch = n.hello.engine.target.split('-').next().unwrap_or_default();
    labels.insert(ARCH_LABEL.into(), arch.into());
    labels
}

/// Whether `d` may run on `n` at all: selector, expressions, the MCU rule, devices.
fn oracle_selects(d: &DeploymentRecord, n: &NodeRecord) -> bool {
    let labels = oracle_labels(n);
    let selector = d
        .spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = d.spec.node_affinity.iter().all(|e| {
        let value = labels.get(&e.key);
        let listed = value.is_some_and(|v| e.values.contains(v));
        match e.operator {
            Operator::In => listed,
            Operator::NotIn => !listed,
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    });
    let wants_mcu = d
        .spec
        .node_selector
        .get(DEVICE_CLASS_LABEL)
        .map(String::as_str)
        == Some("mcu")
        || d.spec.node_affinity.iter().any(|e| {
            e.key == DEVICE_CLASS_LABEL
                && e.operator == Operator::In
                && e.values.iter().any(|v| v == "mcu")
        });
    let class_ok = n.hello.device_class == DeviceClass::Linux || wants_mcu;
    let devices = d
        .spec
        .capabilities
        .to_wire()
        .devices()
        .iter()
        .all(|x| n.hello.devices.contains(x));
    selector && expressions && class_ok && devices
}

/// The workloads of deployment `dep` among the keys of `m`.
fn of_deployment<V>(m: &BTreeMap<String, V>, dep: &str) -> BTreeSet<String> {
    m.keys()
        .filter(|w| deployment_of_workload(w) == dep)
        .cloned()
        .collect()
}

/// (memory, count, bytes) each node holds under `p`.
fn usage(f: &Fleet, p: &Placement) -> BTreeMap<NodeName, (u64, u32, usize)> {
    let mut out: BTreeMap<NodeName, (u64, u32, usize)> = BTreeMap::new();
    for (w, node) in &p.assigned {
        let d = &f.deployments[deployment_of_workload(w)];
        let u = out.entry(node.clone()).or_default();
        u.0 += d.spec.memory_bytes;
        u.1 += 1;
        u.2 += d.wire_size();
    }
    out
}

fn fits(n: &NodeRecord, used: (u64, u32, usize), d: &DeploymentRecord) -> bool {
    used.0 + d.spec.memory_bytes <= n.hello.capacity.memory_bytes
        && used.1 < n.hello.capacity.max_workloads
        && used.2 + d.wire_size() <= DESIRED_STATE_BUDGET
}

fn is_every_node_name(d: &DeploymentRecord, w: &str, node: &str) -> bool {
    (0..16).any(|salt| every_node::workload_name(&d.name, node, salt) == w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// (a) capacity, (b) selection and admission, (e) every-node coverage, and every
    /// replica accounted for exactly once.
    #[test]
    fn placements_respect_capacity_selection_and_cover_every_node(f in arb_fleet()) {
        let p = run(&f.deployments, &f.nodes, &f.current);
        let used = usage(&f, &p);
        for (name, (memory, count, bytes)) in &used {
            let cap = f.nodes[name].hello.capacity;
            prop_assert!(*memory <= cap.memory_bytes, "{name} memory");
            prop_assert!(*count <= cap.max_workloads, "{name} slots");
            prop_assert!(*bytes <= DESIRED_STATE_BUDGET, "{name} bytes");
        }
        for (w, node) in &p.assigned {
            prop_assert!(!p.unschedulable.contains_key(w), "{w} both placed and not");
            let d = &f.deployments[deployment_of_workload(w)];
            let n = &f.nodes[node];
            prop_assert!(oracle_selects(d, n), "{w} on {node}, which it does not select");
            let held = f.current.get(w) == Some(node);
            match d.spec.placement {
                PlacementPolicy::EveryNode => {
                    prop_assert!(is_every_node_name(d, w, node), "{w} is not {node}'s");
                    prop_assert!(held || n.ready, "new {w} on NotReady {node}");
                }
                PlacementPolicy::Replicas => {
                    if held {
                        let within = NOW - n.since_ms < GRACE;
                        prop_assert!(n.ready || within, "{w} kept on {node} past grace");
                        prop_assert!(n.scheduling != Scheduling::Drained, "{w} kept on drained");
                    } else {
                        prop_assert!(n.ready, "new {w} on NotReady {node}");
                        prop_assert!(n.scheduling == Scheduling::Enabled, "new {w} on {node}");
                    }
                }
            }
        }
        for d in f.deployments.values() {
            let (placed, pending) = (of_deployment(&p.assigned, &d.name), of_deployment(&p.unschedulable, &d.name));
            match d.spec.placement {
                PlacementPolicy::Replicas => {
                    let all: BTreeSet<String> = (0..d.spec.replicas).map(|o| d.workload_name(o)).collect();
                    prop_assert_eq!(placed.union(&pending).cloned().collect::<BTreeSet<_>>(), all);
                    let head = format!("0/{} nodes fit: ", f.nodes.len());
                    for w in &pending {
                        prop_assert!(p.unschedulable[w].starts_with(&head), "{}", p.unschedulable[w]);
                    }
                }
                PlacementPolicy::EveryNode => {
                    // (e) one workload per matching node: placed, or pending with its reason.
                    let matching: BTreeSet<&str> = f.nodes.values()
                        .filter(|n| oracle_selects(d, n))
                        .map(|n| n.name.as_str())
                        .collect();
                    let on: Vec<&str> = placed.iter().map(|w| p.assigned[w].as_str()).collect();
                    let on_set: BTreeSet<&str> = on.iter().copied().collect();
                    prop_assert_eq!(on.len(), on_set.len(), "two workloads on one node");
                    let waiting: BTreeSet<&str> = pending.iter().map(|w| {
                        let reason = &p.unschedulable[w];
                        let node = reason.strip_prefix("node ").and_then(|r| r.split_once(": "));
                        node.map_or("?", |(n, _)| n)
                    }).collect();
                    prop_assert_eq!(waiting.len(), pending.len());
                    prop_assert!(on_set.is_disjoint(&waiting));
                    prop_assert_eq!(on_set.union(&waiting).copied().collect::<BTreeSet<_>>(), matching);
                    for node in waiting {
                        let n = &f.nodes[node];
                        let w = pending.iter().find(|w| p.unschedulable[*w].starts_with(&format!("node {node}: "))).unwrap();
                        prop_assert!(is_every_node_name(d, w, node));
                        let free = fits(n, used.get(node).copied().unwrap_or_default(), d);
                        prop_assert!(!n.ready || !free, "{node} matches and fits, yet no {}", d.name);
                    }
                }
            }
        }
        for w in p.assigned.keys().chain(p.unschedulable.keys()) {
            prop_assert!(wasmfleet_proto::name::validate(w).is_ok(), "{w}");
        }
    }

    /// (c) the same inputs give the same output, whatever order the maps were filled in.
    #[test]
    fn placement_is_deterministic(f in arb_fleet()) {
        let p = run(&f.deployments, &f.nodes, &f.current);
        prop_assert_eq!(&run(&f.deployments, &f.nodes, &f.current), &p);
        let rev = |m: &BTreeMap<NodeName, Arc<NodeRecord>>| {
            let mut out = BTreeMap::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), v.clone());
            }
            out
        };
        let deps: BTreeMap<_, _> = f.deployments.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        let current: BTreeMap<_, _> = f.current.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(&run(&deps, &rev(&f.nodes), &current), &p);
        // Label order within a node's announcement does not matter either.
        let mut shuffled = f.nodes.clone();
        for n in shuffled.values_mut() {
            Arc::make_mut(&mut Arc::make_mut(n).hello).labels.reverse();
        }
        prop_assert_eq!(run(&f.deployments, &shuffled, &f.current), p);
    }

    /// (d) feeding a placement back moves nothing and changes no reason, and adding a node
    /// never moves a placed workload.
    #[test]
    fn placement_is_stable(f in arb_fleet(), extra in arb_node("zz".into())) {
        let first = run(&f.deployments, &f.nodes, &f.current);
        prop_assert_eq!(&run(&f.deployments, &f.nodes, &first.assigned), &first);
        let mut more = f.nodes.clone();
        more.insert(extra.name.clone(), Arc::new(extra));
        let second = run(&f.deployments, &more, &first.assigned);
        for (w, node) in &first.assigned {
            prop_assert_eq!(second.assigned.get(w), Some(node), "{} moved", w);
        }
    }
}
