//! Per-node desired states from a placement.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmfleet_proto::{Code, WorkloadSpec};

use crate::model::{DeploymentRecord, NodeDesired, NodeName, Placed, SpecError, Templates};
use crate::scheduler::Placement;

/// The placement implied by the desired states already sent: workload → node.
pub fn current_placement(
    desired: &BTreeMap<NodeName, Arc<NodeDesired>>,
) -> BTreeMap<String, NodeName> {
    desired
        .iter()
        .flat_map(|(node, state)| {
            state
                .workloads
                .iter()
                .map(move |w| (w.name.to_string(), node.clone()))
        })
        .collect()
}

/// Builds the desired state of every node touched by `placement` or holding workloads in
/// `previous`, and returns those that differ from `previous`, each with its generation bumped
/// and stamped with `fleet`. Unchanged nodes are not returned, so re-applying the same
/// deployments publishes nothing. `code` says which code a workload runs on a node (the
/// artifact for the node's engine profile, see [`crate::model::code_for`]). Workloads share
/// their templates through `templates` ([`crate::model::node_desired`]).
pub fn node_desired_states(
    deployments: &BTreeMap<String, DeploymentRecord>,
    placement: &Placement,
    previous: &BTreeMap<NodeName, Arc<NodeDesired>>,
    fleet: u64,
    code: &impl Fn(&str, &WorkloadSpec) -> Code,
    templates: &mut Templates,
) -> Result<BTreeMap<NodeName, NodeDesired>, SpecError> {
    let mut next: BTreeMap<NodeName, Vec<Placed>> = previous
        .keys()
        .map(|node| (node.clone(), Vec::new()))
        .collect();
    // Each node's list is allocated at its final size. Grown by pushes, one spec took room for
    // four until the end of the pass: 1.6 KiB a node, the largest part of the hub's peak heap
    // (a profile of 5,000 nodes), which its resident memory never gave back.
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for node in placement.assigned.values() {
        *per_node.entry(node).or_default() += 1;
    }
    for dep in deployments.values() {
        // Replicas and every-node workloads alike: whatever the placement put on a node, at
        // the revision its rollout gives it.
        for (index, name) in placement.workloads_of(dep).into_iter().enumerate() {
            if let Some(node) = placement.assigned.get(&name) {
                let mut spec = dep.workload_spec_at(name, index)?;
                spec.code = code(node, &spec);
                let workloads = next.entry(node.clone()).or_default();
                if workloads.capacity() == 0 {
                    workloads.reserve_exact(per_node.get(node.as_str()).copied().unwrap_or(1));
                }
                workloads.push(Placed::new(spec, templates));
            }
        }
    }
    let mut changed = BTreeMap::new();
    for (node, mut workloads) in next {
        workloads.sort_by(|a, b| a.name.cmp(&b.name));
        let old = previous.get(&node);
        if old.map(|o| &*o.workloads) == Some(&workloads[..]) {
            continue;
        }
        if old.is_none() && workloads.is_empty() {
            continue;
        }
        let state = NodeDesired {
            fleet,
            generation: old.map_or(0, |o| o.generation) + 1,
            // Kept until the next change: no spare room (a boxed slice has none).
            workloads: workloads.into_boxed_slice(),
        };
        changed.insert(node, state);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::deployment;

    const SOURCE: fn(&str, &WorkloadSpec) -> Code = |_, _| Code::Source;

    /// No desired states yet.
    fn nothing() -> BTreeMap<NodeName, Arc<NodeDesired>> {
        BTreeMap::new()
    }

    /// Desired states as the controller holds them.
    fn held(states: &BTreeMap<NodeName, NodeDesired>) -> BTreeMap<NodeName, Arc<NodeDesired>> {
        states
            .iter()
            .map(|(n, s)| (n.clone(), Arc::new(s.clone())))
            .collect()
    }

    /// A pass with templates of its own.
    fn states(
        d: &BTreeMap<String, DeploymentRecord>,
        p: &Placement,
        previous: &BTreeMap<NodeName, Arc<NodeDesired>>,
        code: &impl Fn(&str, &WorkloadSpec) -> Code,
    ) -> BTreeMap<NodeName, NodeDesired> {
        node_desired_states(d, p, previous, 7, code, &mut Templates::default()).unwrap()
    }

    fn placement(pairs: &[(&str, &str)]) -> Placement {
        Placement {
            assigned: pairs
                .iter()
                .map(|(w, n)| (w.to_string(), NodeName::from(*n)))
                .collect(),
            unschedulable: BTreeMap::new(),
        }
    }

    #[test]
    fn first_placement_creates_generation_one() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "a"), ("hello-1", "b")]);
        let out = states(&d, &p, &nothing(), &SOURCE);
        assert_eq!(out.len(), 2);
        assert_eq!(out["a"].generation, 1);
        assert_eq!(out["a"].fleet, 7, "stamped with the fleet");
        assert!(
            Arc::ptr_eq(
                &out["a"].workloads[0].template,
                &out["b"].workloads[0].template
            ),
            "replicas of one revision share their template"
        );
        assert_eq!(&*out["a"].workloads[0].name, "hello-0");
        assert_eq!(out["b"].workloads[0].template.args, ["--interval", "1s"]);
    }

    #[test]
    fn unchanged_inputs_change_nothing() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "a"), ("hello-1", "a")]);
        let first = states(&d, &p, &nothing(), &SOURCE);
        assert!(states(&d, &p, &held(&first), &SOURCE).is_empty());
        assert_eq!(current_placement(&held(&first)), p.assigned);
    }

    #[test]
    fn removal_sends_an_empty_state_with_a_new_generation() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let first = states(&d, &placement(&[("hello-0", "a")]), &nothing(), &SOURCE);
        let out = states(
            &BTreeMap::new(),
            &Placement::default(),
            &held(&first),
            &SOURCE,
        );
        assert_eq!(out["a"].generation, 2);
        assert!(out["a"].workloads.is_empty());
    }

    #[test]
    fn template_change_bumps_generation_and_revision_reaches_the_node() {
        let mut d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let p = placement(&[("hello-0", "a")]);
        let first = states(&d, &p, &nothing(), &SOURCE);
        let dep = d.get_mut("hello").unwrap();
        dep.revision = 2;
        dep.spec.env.insert("X".into(), "1".into());
        let out = states(&d, &p, &held(&first), &SOURCE);
        assert_eq!(out["a"].generation, 2);
        assert_eq!(out["a"].workloads[0].template.revision, 2);
        assert_eq!(out["a"].workloads[0].template.env.len(), 2);
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
            (NodeName::from("a"), Arc::new(node("a", true, 1 << 30, 8))),
            (NodeName::from("b"), Arc::new(node("b", true, 1 << 30, 8))),
        ]);
        let names = |s: &NodeDesired| {
            s.workloads
                .iter()
                .map(|w| w.name.to_string())
                .collect::<Vec<_>>()
        };
        let mut desired = BTreeMap::new();
        let pass = |nodes: &BTreeMap<NodeName, _>,
                    desired: &mut BTreeMap<NodeName, Arc<NodeDesired>>,
                    now_ms| {
            let p = schedule(Inputs {
                deployments: &d,
                nodes,
                current: &current_placement(desired),
                now_ms,
                not_ready_grace_ms: 30_000,
            });
            let changed = states(&d, &p, desired, &SOURCE);
            desired.extend(held(&changed));
            changed
        };
        let probe_a = every_node_workload_name("probe", "a");
        pass(&nodes, &mut desired, 0);
        assert_eq!(names(&desired["a"]), ["hello-0", probe_a.as_str()]);
        let spec = &desired["a"].workloads[1].template;
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
        let out = states(&d, &p, &nothing(), &code);
        assert_eq!(out["arm"].workloads[0].template.code, Code::Compiling);
        assert_eq!(out["x86"].workloads[0].template.code, Code::Source);
        // The artifact arriving is a change: the node is sent a new generation.
        let ready = |_: &str, _: &WorkloadSpec| Code::Source;
        let again = states(&d, &p, &held(&out), &ready);
        assert_eq!(again.keys().collect::<Vec<_>>(), ["arm"]);
        assert_eq!(again["arm"].generation, 2);
    }
}
