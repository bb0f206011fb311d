//! Which changes of one node a scheduler pass could answer differently.
//!
//! A pass costs time in the number of nodes (100,000 label maps at 100,000 nodes), and a
//! connect storm is mostly presences that cannot move anything: the scheduler is stable
//! (a workload stays while its node may keep it) and never rebalances, so a node's change
//! matters only to what it holds, what waits, and its own every-node workloads.

use std::collections::BTreeMap;

use super::Placement;
use crate::model::deployment::PlacementPolicy;
use crate::model::{DeploymentRecord, NodeRecord};

/// Whether a pass after `node` changed from `old` (`None`: a node not seen before) could
/// place anything differently from `placement`, the last pass's result over the same
/// deployments:
/// - a new node takes only what waits (replicas no node took) and its own every-node
///   workloads;
/// - a new announcement (labels, capacity, devices, engine) or scheduling state can evict or
///   admit anything;
/// - a node back to Ready takes only what waits: its every-node workloads that could not land
///   while it was away wait too;
/// - a node gone NotReady keeps its workloads for the grace period (the deadline that ends
///   it schedules again); only the reasons given for what waits count NotReady nodes.
pub fn node_change_may_move(
    old: Option<&NodeRecord>,
    node: &NodeRecord,
    deployments: &BTreeMap<String, DeploymentRecord>,
    placement: &Placement,
    not_ready_grace_ms: u64,
) -> bool {
    if deployments.is_empty() {
        return false;
    }
    let waiting = !placement.unschedulable.is_empty();
    let Some(old) = old else {
        return waiting
            || deployments
                .values()
                .any(|d| d.spec.placement == PlacementPolicy::EveryNode);
    };
    if old.hello != node.hello || old.scheduling != node.scheduling {
        return true;
    }
    match (old.ready, node.ready) {
        (false, true) => waiting,
        (true, false) => waiting || not_ready_grace_ms == 0,
        // Only times changed (since, created).
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Scheduling;
    use crate::scheduler::tests::deployment;

    fn node(name: &str) -> NodeRecord {
        crate::scheduler::tests::node(name, true, 1 << 30, 8)
    }

    fn every_node(name: &str) -> DeploymentRecord {
        let mut d = deployment(name, 0);
        d.spec.placement = PlacementPolicy::EveryNode;
        d
    }

    fn placed() -> Placement {
        Placement {
            assigned: BTreeMap::from([("app-0".to_string(), "a".into())]),
            unschedulable: BTreeMap::new(),
        }
    }

    fn waiting() -> Placement {
        let mut p = placed();
        p.unschedulable
            .insert("app-1".into(), "0/1 nodes are available".into());
        p
    }

    fn replicas() -> BTreeMap<String, DeploymentRecord> {
        BTreeMap::from([("app".to_string(), deployment("app", 1))])
    }

    fn away(n: &NodeRecord) -> NodeRecord {
        NodeRecord {
            ready: false,
            since_ms: n.since_ms + 1,
            ..n.clone()
        }
    }

    #[test]
    fn without_deployments_nothing_moves() {
        let a = node("a");
        let none = BTreeMap::new();
        let empty = Placement::default();
        assert!(!node_change_may_move(None, &a, &none, &empty, 0));
        assert!(!node_change_may_move(Some(&a), &away(&a), &none, &empty, 0));
    }

    #[test]
    fn a_new_node_matters_to_what_waits_and_to_every_node_workloads() {
        let b = node("b");
        assert!(!node_change_may_move(
            None,
            &b,
            &replicas(),
            &placed(),
            60_000
        ));
        assert!(node_change_may_move(
            None,
            &b,
            &replicas(),
            &waiting(),
            60_000
        ));
        let daemons = BTreeMap::from([("agent".to_string(), every_node("agent"))]);
        assert!(node_change_may_move(None, &b, &daemons, &placed(), 60_000));
    }

    #[test]
    fn presence_flips_matter_to_what_waits_or_without_grace() {
        let a = node("a");
        let gone = away(&a);
        let (d, p, w) = (replicas(), placed(), waiting());
        assert!(!node_change_may_move(Some(&a), &gone, &d, &p, 60_000));
        assert!(node_change_may_move(Some(&a), &gone, &d, &w, 60_000));
        assert!(node_change_may_move(Some(&a), &gone, &d, &p, 0), "no grace");
        assert!(!node_change_may_move(Some(&gone), &a, &d, &p, 60_000));
        assert!(node_change_may_move(Some(&gone), &a, &d, &w, 60_000));
        let later = NodeRecord {
            since_ms: a.since_ms + 5,
            ..a.clone()
        };
        assert!(!node_change_may_move(Some(&a), &later, &d, &w, 0));
    }

    #[test]
    fn a_new_announcement_or_scheduling_state_always_matters() {
        let a = node("a");
        let mut relabelled = a.clone();
        Arc::make_mut(&mut relabelled.hello).labels.clear();
        Arc::make_mut(&mut relabelled.hello).capacity.max_workloads += 1;
        let cordoned = NodeRecord {
            scheduling: Scheduling::Cordoned,
            ..a.clone()
        };
        for new in [relabelled, cordoned] {
            assert!(node_change_may_move(
                Some(&a),
                &new,
                &replicas(),
                &placed(),
                60_000
            ));
        }
    }
}
