//! Cordon and drain, every-node placement, affinity, built-in labels and reasons.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmfleet_proto::{DeviceClass, Label};

use super::tests::{GI, deployment, deps, node, nodes, run};
use super::*;
use crate::model::deployment::{
    MAX_DEPLOYMENT_NAME, MatchExpression, Operator, deployment_of_workload,
};

fn every_node(name: &str) -> DeploymentRecord {
    let mut d = deployment(name, 0);
    d.spec.placement = PlacementPolicy::EveryNode;
    d
}

fn labelled(mut n: NodeRecord, labels: &[(&str, &str)]) -> NodeRecord {
    Arc::make_mut(&mut n.hello).labels = labels
        .iter()
        .map(|(k, v)| Label {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    n
}

fn expr(key: &str, operator: Operator, values: &[&str]) -> MatchExpression {
    MatchExpression {
        key: key.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn with_scheduling(mut n: NodeRecord, s: Scheduling) -> NodeRecord {
    n.scheduling = s;
    n
}

fn mcu(name: &str) -> NodeRecord {
    let mut n = node(name, true, GI, 4);
    Arc::make_mut(&mut n.hello).device_class = DeviceClass::Mcu;
    Arc::make_mut(&mut n.hello).engine.target = "pulley32".into();
    labelled(n, &[(DEVICE_CLASS_LABEL, "mcu")])
}

fn on<'a>(p: &'a Placement, node: &str) -> Vec<&'a str> {
    p.assigned
        .iter()
        .filter(|(_, n)| *n == node)
        .map(|(w, _)| w.as_str())
        .collect()
}

#[test]
fn cordoned_nodes_keep_their_replicas_but_take_no_new_ones() {
    let n = nodes(vec![node("a", true, GI, 10), node("b", true, GI, 10)]);
    let d = deps(vec![deployment("hello", 2)]);
    let first = run(&d, &n, &BTreeMap::new(), 0);
    assert_eq!(on(&first, "a"), ["hello-0"]);
    let mut n = n;
    n.insert(
        "a".into(),
        Arc::new(with_scheduling(
            NodeRecord::clone(&n["a"]),
            Scheduling::Cordoned,
        )),
    );
    let kept = run(&d, &n, &first.assigned, 1);
    assert_eq!(kept, first, "cordon moves nothing");
    // Scaling up lands only on the schedulable node.
    let up = run(&deps(vec![deployment("hello", 4)]), &n, &first.assigned, 2);
    assert_eq!(on(&up, "a"), ["hello-0"]);
    assert_eq!(on(&up, "b").len(), 3);
    // Nothing else schedulable: the reason says so.
    n.insert(
        "b".into(),
        Arc::new(with_scheduling(
            NodeRecord::clone(&n["b"]),
            Scheduling::Cordoned,
        )),
    );
    let p = run(&deps(vec![deployment("new", 1)]), &n, &BTreeMap::new(), 3);
    assert_eq!(p.unschedulable["new-0"], "0/2 nodes fit: 2 unschedulable");
}

#[test]
fn drained_nodes_lose_their_replicas_but_keep_every_node_workloads() {
    let n = nodes(vec![node("a", true, GI, 10), node("b", true, GI, 10)]);
    let d = deps(vec![deployment("hello", 2), every_node("probe")]);
    let first = run(&d, &n, &BTreeMap::new(), 0);
    let probe_a = every_node_workload_name("probe", "a");
    assert_eq!(on(&first, "a"), ["hello-0", probe_a.as_str()]);
    let mut n = n;
    n.insert(
        "a".into(),
        Arc::new(with_scheduling(
            NodeRecord::clone(&n["a"]),
            Scheduling::Drained,
        )),
    );
    let drained = run(&d, &n, &first.assigned, 1);
    assert_eq!(
        on(&drained, "a"),
        [probe_a.as_str()],
        "only the every-node one stays"
    );
    assert_eq!(drained.assigned["hello-0"], "b");
    assert!(drained.unschedulable.is_empty());
    // Every-node workloads land on cordoned and drained nodes, as DaemonSets tolerate them.
    let late = run(&deps(vec![every_node("late")]), &n, &BTreeMap::new(), 2);
    assert_eq!(late.assigned.len(), 2, "{late:?}");
    // Uncordoned: the moved replica stays where it went.
    n.insert(
        "a".into(),
        Arc::new(with_scheduling(
            NodeRecord::clone(&n["a"]),
            Scheduling::Enabled,
        )),
    );
    assert_eq!(run(&d, &n, &drained.assigned, 3), drained);
}

#[test]
fn every_node_runs_one_workload_per_matching_node() {
    let mut n = nodes(vec![
        labelled(node("a", true, GI, 10), &[("site", "lab")]),
        labelled(node("b", true, GI, 10), &[("site", "lab")]),
        labelled(node("c", true, GI, 10), &[("site", "field")]),
        mcu("m"),
    ]);
    let mut probe = every_node("probe");
    probe.spec.node_selector = BTreeMap::from([("site".into(), "lab".into())]);
    let d = deps(vec![probe.clone()]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    let names: Vec<_> = ["a", "b"]
        .iter()
        .map(|node| every_node_workload_name("probe", node))
        .collect();
    assert_eq!(p.assigned[&names[0]], "a");
    assert_eq!(p.assigned[&names[1]], "b");
    assert_eq!(p.assigned.len(), 2);
    assert!(
        p.unschedulable.is_empty(),
        "non-matching nodes are not listed"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(p.workloads_of(&probe), sorted);
    for name in &names {
        assert_eq!(deployment_of_workload(name), "probe");
        assert_eq!(name.len(), "probe-".len() + 8);
        wasmfleet_proto::name::validate(name).unwrap();
    }
    let longest = every_node_workload_name(&"d".repeat(MAX_DEPLOYMENT_NAME), "a");
    wasmfleet_proto::name::validate(&longest).unwrap();
    // A node joining gets its own; nothing else moves.
    n.insert(
        "d".into(),
        Arc::new(labelled(node("d", true, GI, 10), &[("site", "lab")])),
    );
    let joined = run(&d, &n, &p.assigned, 1);
    assert_eq!(joined.assigned.len(), 3);
    assert!(p.assigned.iter().all(|(w, n)| joined.assigned[w] == *n));
    // A node whose labels stop matching loses its workload.
    n.insert(
        "a".into(),
        Arc::new(labelled(NodeRecord::clone(&n["a"]), &[("site", "field")])),
    );
    let left = run(&d, &n, &joined.assigned, 2);
    assert!(!left.assigned.contains_key(&names[0]));
    assert_eq!(left.assigned.len(), 2);
}

#[test]
fn every_node_workloads_stay_bound_to_a_not_ready_node() {
    let mut n = nodes(vec![node("a", true, GI, 10), node("b", true, GI, 10)]);
    let d = deps(vec![every_node("probe"), deployment("hello", 1)]);
    let first = run(&d, &n, &BTreeMap::new(), 0);
    assert_eq!(first.assigned["hello-0"], "a");
    let a = Arc::make_mut(n.get_mut("a").unwrap());
    a.ready = false;
    a.since_ms = 1_000;
    // Long after the grace period: the replica moved, the every-node workload did not.
    let later = run(&d, &n, &first.assigned, 100_000);
    assert_eq!(later.assigned["hello-0"], "b");
    assert_eq!(later.assigned[&every_node_workload_name("probe", "a")], "a");
    // A new every-node deployment waits for the node to be Ready.
    let new = run(
        &deps(vec![every_node("late")]),
        &n,
        &BTreeMap::new(),
        100_000,
    );
    let late_a = every_node_workload_name("late", "a");
    assert_eq!(new.unschedulable[&late_a], "node a: not ready");
    assert_eq!(new.assigned.len(), 1);
}

#[test]
fn every_node_workloads_count_against_capacity() {
    let n = nodes(vec![node("a", true, GI, 1), node("b", true, 8 << 20, 10)]);
    let d = deps(vec![every_node("probe"), deployment("hello", 1)]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    let (pa, pb) = (
        every_node_workload_name("probe", "a"),
        every_node_workload_name("probe", "b"),
    );
    assert_eq!(p.assigned[&pa], "a");
    assert_eq!(p.unschedulable[&pb], "node b: insufficient memory");
    assert_eq!(
        p.unschedulable["hello-0"], "0/2 nodes fit: 1 insufficient memory, 1 too many workloads",
        "the every-node workload took a's only slot"
    );
    let mut sorted = vec![pa, pb];
    sorted.sort();
    assert_eq!(p.workloads_of(&d["probe"]), sorted);
}

#[test]
fn colliding_node_names_get_distinct_stable_names() {
    // FNV-1a 32 of both names is d634d7cb.
    let (x, y) = ("node-522789", "node-739192");
    assert_eq!(
        every_node_workload_name("p", x),
        every_node_workload_name("p", y)
    );
    let n = nodes(vec![node(x, true, GI, 4), node(y, true, GI, 4)]);
    let d = deps(vec![every_node("p")]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned.len(), 2);
    assert_eq!(p.assigned[&every_node_workload_name("p", x)], x);
    assert_eq!(p.assigned[&every_node::workload_name("p", y, 1)], y);
    // Whoever holds a name keeps it, even against name order.
    let current = BTreeMap::from([(every_node_workload_name("p", y), y.into())]);
    let p = run(&d, &n, &current, 0);
    assert_eq!(p.assigned[&every_node_workload_name("p", y)], y);
    assert_eq!(p.assigned[&every_node::workload_name("p", x, 1)], x);
}

#[test]
fn affinity_expressions_and_with_the_selector() {
    let mut arm = labelled(node("arm", true, GI, 10), &[("site", "lab"), ("gpu", "")]);
    Arc::make_mut(&mut arm.hello).engine.target = "aarch64-unknown-linux-gnu".into();
    let mut x86 = labelled(node("x86", true, GI, 10), &[("site", "lab")]);
    Arc::make_mut(&mut x86.hello).engine.target = "x86_64-unknown-linux-gnu".into();
    let mut field = labelled(node("field", true, GI, 10), &[("site", "field")]);
    Arc::make_mut(&mut field.hello).engine.target = "aarch64-unknown-linux-gnu".into();
    let n = nodes(vec![arm, x86, field]);
    let place = |selector: &[(&str, &str)], exprs: Vec<MatchExpression>| {
        let mut d = deployment("app", 1);
        d.spec.node_selector = selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spec.node_affinity = exprs;
        let p = run(&deps(vec![d]), &n, &BTreeMap::new(), 0);
        match p.assigned.get("app-0") {
            Some(node) => Ok(node.clone()),
            None => Err(p.unschedulable["app-0"].clone()),
        }
    };
    let arch_arm = || expr(ARCH_LABEL, Operator::In, &["aarch64"]);
    assert_eq!(
        place(&[("site", "lab")], vec![arch_arm()]),
        Ok("arm".into())
    );
    assert_eq!(
        place(&[], vec![expr("site", Operator::NotIn, &["lab"])]),
        Ok("field".into())
    );
    assert_eq!(
        place(&[], vec![expr("gpu", Operator::Exists, &[])]),
        Ok("arm".into())
    );
    assert_eq!(
        place(
            &[("site", "lab")],
            vec![expr("gpu", Operator::DoesNotExist, &[])]
        ),
        Ok("x86".into())
    );
    assert_eq!(
        place(
            &[("site", "lab")],
            vec![expr(ARCH_LABEL, Operator::In, &["riscv64"])]
        ),
        Err(
            "0/3 nodes fit: 2 label wasmfleet.dev/arch not in (riscv64), \
             1 missing label site=lab"
                .into()
        )
    );
    assert_eq!(
        place(
            &[],
            vec![
                expr("site", Operator::In, &["lab"]),
                expr("gpu", Operator::DoesNotExist, &[]),
                expr(ARCH_LABEL, Operator::NotIn, &["x86_64", "riscv64"]),
            ]
        ),
        Err(
            "0/3 nodes fit: 1 has label gpu, 1 label site not in (lab), \
             1 label wasmfleet.dev/arch in (x86_64, riscv64)"
                .into()
        )
    );
    assert_eq!(
        place(&[], vec![expr("rack", Operator::Exists, &[])]),
        Err("0/3 nodes fit: 3 missing label rack".into())
    );
}

#[test]
fn built_in_labels_select_and_cannot_be_overridden() {
    let mut liar = labelled(
        node("liar", true, GI, 10),
        &[
            (NODE_LABEL, "other"),
            (ARCH_LABEL, "riscv64"),
            (DEVICE_CLASS_LABEL, "mcu"),
        ],
    );
    Arc::make_mut(&mut liar.hello).engine.target = "x86_64-unknown-linux-gnu".into();
    let labels = node_labels(&liar);
    assert_eq!(labels[NODE_LABEL], "liar");
    assert_eq!(labels[ARCH_LABEL], "x86_64");
    assert_eq!(labels[DEVICE_CLASS_LABEL], "linux");
    assert_eq!(node_labels(&mcu("m"))[ARCH_LABEL], "pulley32");
    assert_eq!(node_labels(&mcu("m"))[DEVICE_CLASS_LABEL], "mcu");
    let n = nodes(vec![liar, node("other", true, GI, 10), mcu("m")]);
    let mut pinned = deployment("pinned", 1);
    pinned.spec.node_selector = BTreeMap::from([(NODE_LABEL.into(), "other".into())]);
    let p = run(&deps(vec![pinned]), &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned["pinned-0"], "other");
    // An In expression listing `mcu` selects microcontrollers too; the liar is no MCU.
    let mut both = every_node("both");
    both.spec.node_affinity = vec![expr(DEVICE_CLASS_LABEL, Operator::In, &["mcu", "linux"])];
    let p = run(&deps(vec![both]), &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned.len(), 3, "{p:?}");
    let mut only = every_node("only");
    only.spec.node_affinity = vec![expr(DEVICE_CLASS_LABEL, Operator::In, &["mcu"])];
    let p = run(&deps(vec![only]), &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned.values().collect::<Vec<_>>(), ["m"]);
}

#[test]
fn reasons_count_every_node_by_its_first_failure() {
    let down = labelled(node("down", false, GI, 10), &[("site", "lab")]);
    let n = nodes(vec![
        down,
        with_scheduling(
            labelled(node("cordoned", true, GI, 10), &[("site", "lab")]),
            Scheduling::Cordoned,
        ),
        node("elsewhere", true, GI, 10),
        labelled(node("small-1", true, 1 << 20, 10), &[("site", "lab")]),
        labelled(node("small-2", true, 1 << 20, 0), &[("site", "lab")]),
        labelled(node("full", true, GI, 0), &[("site", "lab")]),
    ]);
    let mut d = deployment("app", 2);
    d.spec.node_selector = BTreeMap::from([("site".into(), "lab".into())]);
    let p = run(&deps(vec![d]), &n, &BTreeMap::new(), 0);
    let want = "0/6 nodes fit: 2 insufficient memory, 1 missing label site=lab, 1 not ready, \
                1 too many workloads, 1 unschedulable";
    assert_eq!(p.unschedulable["app-0"], want);
    assert_eq!(p.unschedulable["app-1"], want);
}

#[test]
fn a_placement_fed_back_is_a_fixed_point() {
    // Reasons are computed against the final usage, so re-running changes no text.
    let n = nodes(vec![
        node("a", true, 48 << 20, 3),
        node("b", true, 40 << 20, 2),
    ]);
    let mut big = deployment("big", 3);
    big.spec.memory_bytes = 20 << 20;
    let d = deps(vec![big, deployment("small", 3), every_node("probe")]);
    let first = run(&d, &n, &BTreeMap::new(), 0);
    assert!(!first.unschedulable.is_empty());
    assert_eq!(run(&d, &n, &first.assigned, 0), first);
}
