//! Workload views: what each replica is doing, from the placement and the nodes' reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmfleet_proto::{NodeStatus, Phase};

use crate::model::{DeploymentRecord, NodeName, NodeRecord, WorkloadView};
use crate::scheduler::Placement;

/// One view per workload of every deployment, by deployment name: its replicas by ordinal, or
/// the every-node workloads the placement holds (placed or not) by name.
pub fn workload_views(
    deployments: &BTreeMap<String, DeploymentRecord>,
    placement: &Placement,
    nodes: &BTreeMap<NodeName, Arc<NodeRecord>>,
    statuses: &BTreeMap<NodeName, Arc<NodeStatus>>,
) -> Vec<WorkloadView> {
    let mut out = Vec::new();
    for dep in deployments.values() {
        for (index, name) in placement.workloads_of(dep).into_iter().enumerate() {
            let (wanted, _) = dep.template_at(index);
            let node = placement.assigned.get(&name);
            let mut view = WorkloadView {
                name,
                deployment: dep.name.clone(),
                node: node.map(NodeName::to_string),
                phase: Phase::Pending.as_str().into(),
                restarts: 0,
                revision: 0,
                exit_code: None,
                message: String::new(),
            };
            fill(
                &mut view,
                wanted,
                placement,
                node.map(NodeName::as_str),
                nodes,
                statuses,
            );
            out.push(view);
        }
    }
    out
}

fn fill(
    view: &mut WorkloadView,
    wanted: u64,
    placement: &Placement,
    node: Option<&str>,
    nodes: &BTreeMap<NodeName, Arc<NodeRecord>>,
    statuses: &BTreeMap<NodeName, Arc<NodeStatus>>,
) {
    let Some(node) = node else {
        view.message = placement
            .unschedulable
            .get(&view.name)
            .cloned()
            .unwrap_or_default();
        return;
    };
    if !nodes.get(node).is_some_and(|n| n.ready) {
        view.phase = "Unknown".into();
        view.message = format!("node {node} is NotReady");
        return;
    }
    let reported = statuses
        .get(node)
        .and_then(|s| s.workloads.iter().find(|w| w.name == view.name));
    let Some(status) = reported else {
        view.message = format!("waiting for node {node}");
        return;
    };
    view.restarts = status.restarts;
    view.revision = status.revision;
    view.exit_code = status.exit_code;
    if status.revision == wanted {
        view.phase = status.phase.as_str().into();
        view.message = status.message.clone();
    } else {
        view.message = format!("updating from revision {} to {wanted}", status.revision);
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::WorkloadStatus;

    use super::*;
    use crate::scheduler::tests::{deployment, node};

    fn status(name: &str, revision: u64, phase: Phase, message: &str) -> NodeStatus {
        NodeStatus {
            observed_fleet: 1,
            observed_generation: 1,
            workloads: vec![WorkloadStatus {
                name: name.into(),
                revision,
                phase,
                restarts: 2,
                exit_code: None,
                message: message.into(),
            }],
        }
    }

    #[test]
    fn phases_follow_placement_readiness_and_reports() {
        let deps = BTreeMap::from([("hello".to_string(), deployment("hello", 4))]);
        let placement = Placement {
            assigned: BTreeMap::from([
                ("hello-0".to_string(), "a".into()),
                ("hello-1".to_string(), "down".into()),
                ("hello-2".to_string(), "b".into()),
            ]),
            unschedulable: BTreeMap::from([("hello-3".to_string(), "no Ready nodes".to_string())]),
        };
        let nodes = crate::scheduler::tests::nodes(vec![
            node("a", true, 1 << 30, 9),
            node("b", true, 1 << 30, 9),
            node("down", false, 1 << 30, 9),
        ]);
        let statuses = BTreeMap::from([
            (
                NodeName::from("a"),
                Arc::new(status(
                    "hello-0",
                    1,
                    Phase::Failed,
                    "wasm trap: unreachable",
                )),
            ),
            (
                NodeName::from("b"),
                Arc::new(status("hello-2", 0, Phase::Running, "")),
            ),
        ]);
        let v = workload_views(&deps, &placement, &nodes, &statuses);
        let phases: Vec<_> = v.iter().map(|w| w.phase.as_str()).collect();
        assert_eq!(phases, ["Failed", "Unknown", "Pending", "Pending"]);
        assert_eq!(v[0].message, "wasm trap: unreachable");
        assert_eq!(v[0].restarts, 2);
        assert!(v[2].message.contains("updating from revision 0 to 1"));
        assert_eq!(v[3].message, "no Ready nodes");
        assert_eq!(v[3].node, None);
    }
}
