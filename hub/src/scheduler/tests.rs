use std::collections::BTreeMap;
use std::sync::Arc;

use wasmfleet_proto::{Capacity, DeviceClass, Hello};

use super::*;
use crate::model::Scheduling;
use crate::model::deployment::tests::spec;

pub(crate) fn node(name: &str, ready: bool, memory: u64, max: u32) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        hello: Arc::new(Hello {
            agent_version: "0.1.0".into(),
            device_class: DeviceClass::Linux,
            capacity: Capacity {
                memory_bytes: memory,
                max_workloads: max,
            },
            labels: vec![],
            engine: wasmfleet_common::engine::host_profile(false),
            devices: vec![],
        }),
        ready,
        since_ms: 0,
        created_ms: 0,
        scheduling: Scheduling::Enabled,
    }
}

pub(crate) fn deployment(name: &str, replicas: u32) -> DeploymentRecord {
    DeploymentRecord {
        name: name.into(),
        spec: spec(replicas),
        generation: 1,
        revision: 1,
        created_ms: 0,
        updated_ms: 0,
        rollout: None,
        history: vec![],
    }
}

pub(crate) fn nodes(list: Vec<NodeRecord>) -> BTreeMap<NodeName, Arc<NodeRecord>> {
    list.into_iter()
        .map(|n| (n.name.clone(), Arc::new(n)))
        .collect()
}

pub(crate) fn deps(list: Vec<DeploymentRecord>) -> BTreeMap<String, DeploymentRecord> {
    list.into_iter().map(|d| (d.name.clone(), d)).collect()
}

pub(crate) fn run(
    deployments: &BTreeMap<String, DeploymentRecord>,
    nodes: &BTreeMap<NodeName, Arc<NodeRecord>>,
    current: &BTreeMap<String, NodeName>,
    now_ms: u64,
) -> Placement {
    schedule(Inputs {
        deployments,
        nodes,
        current,
        now_ms,
        not_ready_grace_ms: 30_000,
    })
}

pub(crate) const GI: u64 = 1 << 30;

#[test]
fn spreads_replicas_across_nodes() {
    let n = nodes(vec![
        node("a", true, GI, 10),
        node("b", true, GI, 10),
        node("c", true, GI, 10),
    ]);
    let d = deps(vec![deployment("hello", 3)]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    let mut used: Vec<_> = p.assigned.values().cloned().collect();
    used.sort();
    assert_eq!(used, ["a", "b", "c"]);
    assert!(p.unschedulable.is_empty());
}

#[test]
fn is_stable_when_nothing_changes() {
    let n = nodes(vec![node("a", true, GI, 10), node("b", true, GI, 10)]);
    let d = deps(vec![deployment("hello", 3), deployment("other", 2)]);
    let first = run(&d, &n, &BTreeMap::new(), 0);
    let second = run(&d, &n, &first.assigned, 1);
    assert_eq!(first, second);
}

#[test]
fn skips_not_ready_and_full_nodes() {
    let n = nodes(vec![
        node("down", false, GI, 10),
        node("tiny", true, 1 << 20, 10),
        node("ok", true, GI, 10),
    ]);
    let p = run(&deps(vec![deployment("hello", 2)]), &n, &BTreeMap::new(), 0);
    assert!(p.assigned.values().all(|n| n == "ok"), "{p:?}");
}

#[test]
fn respects_instance_count_and_reports_unschedulable() {
    let n = nodes(vec![node("a", true, GI, 1)]);
    let p = run(&deps(vec![deployment("hello", 2)]), &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned.len(), 1);
    assert_eq!(
        p.unschedulable["hello-1"],
        "0/1 nodes fit: 1 too many workloads"
    );
    let none = run(
        &deps(vec![deployment("hello", 1)]),
        &BTreeMap::new(),
        &BTreeMap::new(),
        0,
    );
    assert_eq!(none.unschedulable["hello-0"], "0/0 nodes fit: no nodes");
}

#[test]
fn not_ready_node_keeps_replicas_until_grace_expires() {
    let mut n = nodes(vec![node("a", true, GI, 10), node("b", true, GI, 10)]);
    let d = deps(vec![deployment("hello", 1)]);
    let current = BTreeMap::from([("hello-0".to_string(), "a".into())]);
    let a = Arc::make_mut(n.get_mut("a").unwrap());
    a.ready = false;
    a.since_ms = 1_000;
    assert_eq!(run(&d, &n, &current, 20_000).assigned["hello-0"], "a");
    assert_eq!(run(&d, &n, &current, 31_000).assigned["hello-0"], "b");
}

#[test]
fn scaling_down_drops_highest_ordinals() {
    let n = nodes(vec![node("a", true, GI, 10)]);
    let p3 = run(&deps(vec![deployment("hello", 3)]), &n, &BTreeMap::new(), 0);
    let p1 = run(&deps(vec![deployment("hello", 1)]), &n, &p3.assigned, 0);
    assert_eq!(p1.assigned.keys().collect::<Vec<_>>(), ["hello-0"]);
}

#[test]
fn never_exceeds_capacity_for_any_mix() {
    // Exhaustive over small fleets: placements never overfill a node.
    for replicas in 0..6 {
        for cap in 1..4u32 {
            let n = nodes(vec![
                node("a", true, GI, cap),
                node("b", true, 40 << 20, 10),
            ]);
            let d = deps(vec![deployment("x", replicas), deployment("y", replicas)]);
            let p = run(&d, &n, &BTreeMap::new(), 0);
            let on_a = p.assigned.values().filter(|v| *v == "a").count() as u32;
            let on_b = p.assigned.values().filter(|v| *v == "b").count() as u64;
            assert!(on_a <= cap);
            assert!(on_b * (16 << 20) <= 40 << 20);
            assert_eq!(
                p.assigned.len() + p.unschedulable.len(),
                2 * replicas as usize
            );
        }
    }
}

#[test]
fn desired_states_never_outgrow_one_frame() {
    // Replicas with 16 KiB of env each: a node takes only what fits one frame.
    let n = nodes(vec![node("a", true, 1 << 40, 1000)]);
    let mut big = deployment("big", 40);
    big.spec.env.insert("BLOB".into(), "x".repeat(16_000));
    let d = deps(vec![big.clone()]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    let placed = p.assigned.len();
    assert!(placed > 0 && placed < 40, "{placed}");
    assert!(placed * big.wire_size() <= DESIRED_STATE_BUDGET);
    assert!(
        p.unschedulable
            .values()
            .all(|r| r == "0/1 nodes fit: 1 desired state full")
    );
}

#[test]
fn deployments_go_only_where_their_devices_are_and_say_why_not() {
    let mut sensor = deployment("sensor", 1);
    sensor.spec.capabilities.i2c = vec!["i2c-1".into()];
    sensor.spec.capabilities.gpio = vec![17];
    let mut with = node("b-pi", true, GI, 8);
    Arc::make_mut(&mut with.hello).devices =
        vec!["gpio:17".into(), "gpio:27".into(), "i2c-1".into()];
    let mut half = node("a-gw", true, GI, 8);
    Arc::make_mut(&mut half.hello).devices = vec!["i2c-1".into()];
    let mut fleet = nodes(vec![with, half, node("c-gw", true, GI, 8)]);
    let p = run(&deps(vec![sensor.clone()]), &fleet, &BTreeMap::new(), 0);
    assert_eq!(
        p.assigned["sensor-0"], "b-pi",
        "the only node with i2c-1 and gpio:17"
    );
    // The device node gone: nothing fits, and the reason names what each node lacks.
    fleet.remove("b-pi");
    let p = run(&deps(vec![sensor]), &fleet, &p.assigned, 0);
    assert_eq!(
        p.unschedulable["sensor-0"],
        "0/2 nodes fit: 1 missing device gpio:17, 1 missing devices i2c-1, gpio:17"
    );
}

#[test]
fn microcontrollers_take_only_deployments_that_select_them() {
    let mut mcu = node("mcu-1", true, GI, 4);
    Arc::make_mut(&mut mcu.hello).device_class = DeviceClass::Mcu;
    Arc::make_mut(&mut mcu.hello).labels = vec![wasmfleet_proto::Label {
        key: DEVICE_CLASS_LABEL.into(),
        value: "mcu".into(),
    }];
    let n = nodes(vec![mcu, node("gw", true, GI, 4)]);
    // No selector: the Linux node, never the microcontroller.
    let d = deps(vec![deployment("plain", 2)]);
    let p = run(&d, &n, &BTreeMap::new(), 0);
    assert!(p.assigned.values().all(|n| n == "gw"), "{:?}", p.assigned);
    // Selecting the device class: only the microcontroller.
    let mut sel = deployment("counter", 1);
    sel.spec.node_selector = BTreeMap::from([(DEVICE_CLASS_LABEL.into(), "mcu".into())]);
    let p = run(&deps(vec![sel.clone()]), &n, &BTreeMap::new(), 0);
    assert_eq!(p.assigned["counter-0"], "mcu-1");
    // A selector no node matches says so.
    sel.spec.node_selector = BTreeMap::from([("site".into(), "north".into())]);
    let p = run(&deps(vec![sel]), &n, &BTreeMap::new(), 0);
    assert_eq!(
        p.unschedulable["counter-0"],
        "0/2 nodes fit: 2 missing label site=north"
    );
    // No selector: the microcontroller says why it is no candidate.
    let n = nodes(vec![
        NodeRecord::clone(&n["mcu-1"]),
        node("gw", true, GI, 0),
    ]);
    let p = run(&deps(vec![deployment("plain", 1)]), &n, &BTreeMap::new(), 0);
    assert_eq!(
        p.unschedulable["plain-0"],
        "0/2 nodes fit: 1 microcontroller not selected (wasmfleet.dev/device-class=mcu), \
         1 too many workloads"
    );
}
