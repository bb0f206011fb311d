//! Per-node desired states from a placement.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use wasmfleet_proto::{Code, DesiredState, WorkloadSpec};

use crate::model::{DeploymentRecord, SpecError};
use crate::scheduler::Placement;

/// The placement implied by the desired states already sent: workload → node. (States held
/// directly or shared, as the controller holds them.)
pub fn current_placement<S: Borrow<DesiredState>>(
    desired: &BTreeMap<String, S>,
) -> BTreeMap<String, String> {
    desired
        .iter()
        .flat_map(|(node, state)| {
            state
                .borrow()
                .workloads
                .iter()
                .map(move |w| (w.name.clone(), node.clone()))
        })
        .collect()
}

/// Builds the desired state of every node touched by `placement` or holding workloads in
/// `previous`, and returns those that differ from `previous`, each with its generation bumped
/// and stamped with `fleet`. Unchanged nodes are not returned, so re-applying the same
/// deployments publishes nothing. `code` says which code a workload runs on a node (the
/// artifact for the node's engine profile, see [`crate::model::code_for`]).
pub fn node_desired_states<S: Borrow<DesiredState>>(
    deployments: &BTreeMap<String, DeploymentRecord>,
    placement: &Placement,
    previous: &BTreeMap<String, S>,
    fleet: u64,
    code: &impl Fn(&str, &WorkloadSpec) -> Code,
) -> Result<BTreeMap<String, DesiredState>, SpecError> {
    let mut next: BTreeMap<String, DesiredState> = previous
        .keys()
        .map(|node| (node.clone(), DesiredState::default()))
        .collect();
    // Each node's list is allocated at its final size. Grown by pushes, one spec took room for
    // four until the end of the pass: 1.6 KiB a node, the largest part of the hub's peak heap
    // (a profile of 5,000 nodes), which its resident memory never gave back.
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for node in placement.assigned.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    for dep in deployments.values() {
        // Replicas and every-node workloads alike: whatever the placement put on a node, at
        // the revision its rollout gives it.
        for (index, name) in placement.workloads_of(dep).into_iter().enumerate() {
            if let Some(node) = placement.assigned.get(&name) {
                let mut spec = dep.workload_spec_at(name, index)?;
                spec.code = code(node, &spec);
                let workloads = &mut next.entry(node.clone()).or_default().workloads;
                if workloads.capacity() == 0 {
                    workloads.reserve_exact(per_node.get(node.as_str()).copied().unwrap_or(1));
                }
                workloads.push(spec);
            }
        }
    }
    let mut changed = BTreeMap::new();
    for (node, mut state) in next {
        state.workloads.sort_by(|a, b| a.name.cmp(&b.name));
        let old = previous.get(&node).map(Borrow::borrow);
        if old.map(|o: &DesiredState| &o.workloads) == Some(&state.workloads) {
            continue;
        }
        if old.is_none() && state.workloads.is_empty() {
            continue;
        }
        state.generation = old.map_or(0, |o| o.generation) + 1;
        state.fleet = fleet;
        // Kept until the next change: no spare room (sized above; a placed workload of a
        // deployment that is not passed here would be the only slack).
        state.workloads.shrink_to_fit();
        changed.insert(node, state);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scheduler::tests::deployment;

    const SOURCE: fn(&str, &WorkloadSpec) -> Code = |_, _| Code::Source;

    /// No desired states yet.
    fn nothing() -> BTreeMap<String, DesiredState> {
        BTreeMap::new()
    }

    fn placement(pairs: &[(&str, &str)]) -> Placement {
        Placement {
            assigned: pairs
                .iter()
                .map(|(w, n)| (w.to_string(), n.to_string()))
                .collect(),
            unschedulable: BTreeMap::new(),
        }
    }

    #[test]
    fn first_placement_creates_generation_one() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "a"), ("hello-1", "b")]);
        let out = node_desired_states(&d, &p, &nothing(), 7, &SOURCE).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out["a"].generation, 1);
        assert_eq!(out["a"].fleet, 7, "stamped with the fleet");
        let kept = &out["a"].workloads;
        assert_eq!(
            kept.capacity(),
            kept.len(),
            "no room kept for workloads not there"
        );
        assert_eq!(out["a"].workloads[0].name, "hello-0");
        assert_eq!(out["b"].workloads[0].args, ["--interval", "1s"]);
    }

    #[test]
    fn unchanged_inputs_change_nothing() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "a"), ("hello-1", "a")]);
        let first = node_desired_states(&d, &p, &nothing(), 7, &SOURCE).unwrap();
        assert!(
            node_desired_states(&d, &p, &first, 7, &SOURCE)
                .unwrap()
                .is_empty()
        );
        assert_eq!(current_placement(&first), p.assigned);
    }

    #[test]
    fn removal_sends_an_empty_state_with_a_new_generation() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let first =
            node_desired_states(&d, &placement(&[("hello-0", "a")]), &nothing(), 7, &SOURCE)
                .unwrap();
        let out = node_desired_states(&BTreeMap::new(), &Placement::default(), &first, 7, &SOURCE)
            .unwrap();
        assert_eq!(out["a"].generation, 2);
        assert!(out["a"].workloads.is_empty());
    }

    #[test]
    fn template_change_bumps_generation_and_revision_reaches_the_node() {
        let mut d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let p = placement(&[("hello-0", "a")]);
        let first = node_desired_states(&d, &p, &nothing(), 7, &SOURCE).unwrap();
        let dep = d.get_mut("hello").unwrap();
        dep.revision = 2;
        dep.spec.env.insert("X".into(), "1".into());
        let out = node_desired_states(&d, &p, &first, 7, &SOURCE).unwrap();
        assert_eq!(out["a"].generation, 2);
        assert_eq!(out["a"].workloads[0].revision, 2);
        assert_eq!(out["a"].workloads[0].env.len(), 2);
    }

    #[test]
    fn a_returning_node_no_longer_holds_the_replicas_that_moved() {
        use crate::model::deployment::PlacementPolicy;
        use crate::scheduler::tests::node;
        use crate::scheduler::{Inputs, every_node_workload_name, schedule};

        let mut probe = deployment("probe", 0);
        probe.spec.placement = PlacementPolicy::EveryNode;
        let d = BTreeMap::from([
            ("hello".to_string(), deployment("hello", 1)),
            ("probe".to_string(), probe),
        ]);
        let mut nodes = BTreeMap::from([
            ("a".to_string(), Arc::new(node("a", true, 1 << 30, 8))),
            ("b".to_string(), Arc::new(node("b", true, 1 << 30, 8))),
        ]);
        let names = |s: &DesiredState| {
            s.workloads
                .iter()
                .map(|w| w.name.clone())
                .collect::<Vec<_>>()
        };
        let mut desired = BTreeMap::new();
        let pass =
            |nodes: &BTreeMap<String, _>, desired: &mut BTreeMap<String, DesiredState>, now_ms| {
                let p = schedule(Inputs {
                    deployments: &d,
                    nodes,
                    current: &current_placement(desired),
                    now_ms,
                    not_ready_grace_ms: 30_000,
                });
                let changed = node_desired_states(&d, &p, desired, 7, &SOURCE).unwrap();
                desired.extend(changed.clone());
                changed
            };
        let probe_a = every_node_workload_name("probe", "a");
        pass(&nodes, &mut desired, 0);
        assert_eq!(names(&desired["a"]), ["hello-0", probe_a.as_str()]);
        let spec = &desired["a"].workloads[1];
        assert_eq!((spec.deployment.as_str(), spec.args.len()), ("probe", 2));
        // a is lost beyond the grace period: the replica moves, the every-node one stays.
        let a = Arc::make_mut(nodes.get_mut("a").unwrap());
        a.ready = false;
        a.since_ms = 1_000;
        pass(&nodes, &mut desired, 100_000);
        assert_eq!(names(&desired["a"]), [probe_a.as_str()]);
        assert_eq!(desired["a"].generation, 2);
        assert!(names(&desired["b"]).contains(&"hello-0".to_string()));
        // a returns: the replica stays where it went, and a's state has no extra to remove.
        let a = Arc::make_mut(nodes.get_mut("a").unwrap());
        a.ready = true;
        a.since_ms = 200_000;
        assert!(
            pass(&nodes, &mut desired, 200_001).is_empty(),
            "nothing changes"
        );
        assert_eq!(names(&desired["a"]), [probe_a.as_str()]);
    }

    #[test]
    fn each_node_gets_the_code_for_its_engine() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "arm"), ("hello-1", "x86")]);
        let code = |node: &str, _: &WorkloadSpec| match node {
            "arm" => Code::Compiling,
            _ => Code::Source,
        };
        let out = node_desired_states(&d, &p, &nothing(), 7, &code).unwrap();
        assert_eq!(out["arm"].workloads[0].code, Code::Compiling);
        assert_eq!(out["x86"].workloads[0].code, Code::Source);
        // The artifact arriving is a change: the node is sent a new generation.
        let ready = |_: &str, _: &WorkloadSpec| Code::Source;
        let again = node_desired_states(&d, &p, &out, 7, &ready).unwrap();
        assert_eq!(again.keys().collect::<Vec<_>>(), ["arm"]);
        assert_eq!(again["arm"].generation, 2);
    }
}
