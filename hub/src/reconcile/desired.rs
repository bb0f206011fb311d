//! Per-node desired states from a placement.

use std::collections::BTreeMap;

use wasmfleet_proto::DesiredState;

use crate::model::{DeploymentRecord, SpecError};
use crate::scheduler::Placement;

/// The placement implied by the desired states already sent: workload → node.
pub fn current_placement(desired: &BTreeMap<String, DesiredState>) -> BTreeMap<String, String> {
    desired
        .iter()
        .flat_map(|(node, state)| {
            state
                .workloads
                .iter()
                .map(move |w| (w.name.clone(), node.clone()))
        })
        .collect()
}

/// Builds the desired state of every node touched by `placement` or holding workloads in
/// `previous`, and returns those that differ from `previous`, each with its generation bumped
/// and stamped with `fleet`. Unchanged nodes are not returned, so re-applying the same
/// deployments publishes nothing.
pub fn node_desired_states(
    deployments: &BTreeMap<String, DeploymentRecord>,
    placement: &Placement,
    previous: &BTreeMap<String, DesiredState>,
    fleet: u64,
) -> Result<BTreeMap<String, DesiredState>, SpecError> {
    let mut next: BTreeMap<String, DesiredState> = previous
        .keys()
        .map(|node| (node.clone(), DesiredState::default()))
        .collect();
    for dep in deployments.values() {
        for ordinal in 0..dep.spec.replicas {
            let spec = dep.workload_spec(ordinal)?;
            if let Some(node) = placement.assigned.get(&spec.name) {
                next.entry(node.clone()).or_default().workloads.push(spec);
            }
        }
    }
    let mut changed = BTreeMap::new();
    for (node, mut state) in next {
        state.workloads.sort_by(|a, b| a.name.cmp(&b.name));
        let old = previous.get(&node);
        if old.map(|o| &o.workloads) == Some(&state.workloads) {
            continue;
        }
        if old.is_none() && state.workloads.is_empty() {
            continue;
        }
        state.generation = old.map_or(0, |o| o.generation) + 1;
        state.fleet = fleet;
        changed.insert(node, state);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::deployment;

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
        let out = node_desired_states(&d, &p, &BTreeMap::new(), 7).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out["a"].generation, 1);
        assert_eq!(out["a"].fleet, 7, "stamped with the fleet");
        assert_eq!(out["a"].workloads[0].name, "hello-0");
        assert_eq!(out["b"].workloads[0].args, ["--interval", "1s"]);
    }

    #[test]
    fn unchanged_inputs_change_nothing() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 2))]);
        let p = placement(&[("hello-0", "a"), ("hello-1", "a")]);
        let first = node_desired_states(&d, &p, &BTreeMap::new(), 7).unwrap();
        assert!(node_desired_states(&d, &p, &first, 7).unwrap().is_empty());
        assert_eq!(current_placement(&first), p.assigned);
    }

    #[test]
    fn removal_sends_an_empty_state_with_a_new_generation() {
        let d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let first =
            node_desired_states(&d, &placement(&[("hello-0", "a")]), &BTreeMap::new(), 7).unwrap();
        let out = node_desired_states(&BTreeMap::new(), &Placement::default(), &first, 7).unwrap();
        assert_eq!(out["a"].generation, 2);
        assert!(out["a"].workloads.is_empty());
    }

    #[test]
    fn template_change_bumps_generation_and_revision_reaches_the_node() {
        let mut d = BTreeMap::from([("hello".to_string(), deployment("hello", 1))]);
        let p = placement(&[("hello-0", "a")]);
        let first = node_desired_states(&d, &p, &BTreeMap::new(), 7).unwrap();
        let dep = d.get_mut("hello").unwrap();
        dep.revision = 2;
        dep.spec.env.insert("X".into(), "1".into());
        let out = node_desired_states(&d, &p, &first, 7).unwrap();
        assert_eq!(out["a"].generation, 2);
        assert_eq!(out["a"].workloads[0].revision, 2);
        assert_eq!(out["a"].workloads[0].env.len(), 2);
    }
}
