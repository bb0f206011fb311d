//! Rollouts with real agents: a crashing revision stops in its first wave and rolls back, an
//! agent that was away during a rollout ends on the new revision, and every-node workloads
//! follow node labels.

use serde_json::Value;

use crate::common::*;

/// Waves of one replica, then half, then all; a revision proves itself in 2 s.
const WAVES: &str = "  rollout:
    waves: [1, 50%, 100%]
    healthyFor: 2s
    maxUnavailable: 1
    failureThreshold: 1
    progressDeadline: 60s
";

fn revisions(hub: &Hub, deployment: &str) -> Vec<u64> {
    let mut r: Vec<u64> = hub
        .json("workloads")
        .iter()
        .filter(|w| w["deployment"] == deployment)
        .filter_map(|w| w["revision"].as_u64())
        .collect();
    r.sort();
    r
}

#[test]
fn a_revision_that_traps_stops_in_the_first_wave_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let _agents: Vec<Proc> = (0..5)
        .map(|i| start_agent(dir.path(), &hub.mqtt, &format!("n{i}")))
        .collect();
    hub.wait_nodes_ready(5);
    let good = manifest(dir.path(), "hello", 5, &["--interval", "200ms"], WAVES);
    hub.ok(&["apply", "-f", good.to_str().unwrap()]);
    let out = hub.ok(&["rollout", "status", "hello", "--timeout", "60s"]);
    assert!(
        out.contains("successfully rolled out (revision 1)"),
        "{out}"
    );

    let bad = manifest(dir.path(), "hello", 5, &["--trap"], WAVES);
    hub.ok(&["apply", "-f", bad.to_str().unwrap()]);
    let err = hub.fails(&["rollout", "status", "hello", "--timeout", "60s"]);
    assert!(
        err.contains("rollout of deployment \"hello\" failed"),
        "{err}"
    );
    assert!(err.contains("revision 2 failed in wave 1"), "{err}");
    assert!(err.contains("hello-0 failed on node n"), "{err}");
    assert!(err.contains("rolled back to revision 1"), "{err}");

    // Only the first wave's replica ever ran revision 2; all 5 run revision 1 again.
    wait_until("every replica back on revision 1 and Running", || {
        let wls = hub.json("workloads");
        (wls.iter().filter(|w| w["phase"] == "Running").count() == 5
            && revisions(&hub, "hello") == [1, 1, 1, 1, 1])
        .then_some(())
    });
    let events = hub.ok(&["describe", "deployment", "hello"]);
    assert!(events.contains("RolloutFailed"), "{events}");
    let history = hub.ok(&["rollout", "history", "hello"]);
    assert!(history.contains("created"), "{history}");
    assert!(history.contains("args"), "{history}");

    // Undo: the failed revision's predecessor rolls out as revision 3.
    let out = hub.ok(&["rollout", "undo", "hello"]);
    assert!(out.contains("revision 3"), "{out}");
    let out = hub.ok(&["rollout", "status", "hello", "--timeout", "60s"]);
    assert!(
        out.contains("successfully rolled out (revision 3)"),
        "{out}"
    );
    assert_eq!(revisions(&hub, "hello"), [3, 3, 3, 3, 3]);
}

#[test]
fn an_agent_away_during_a_rollout_ends_on_the_new_revision() {
    let dir = tempfile::tempdir().unwrap();
    // A long grace period: the absent node keeps its replica (nothing moves).
    let hub = start_hub_with(
        dir.path(),
        free_port(),
        free_port(),
        None,
        &["--node-grace-secs", "600"],
    );
    let mut agents: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| start_agent(dir.path(), &hub.mqtt, n))
        .collect();
    hub.wait_nodes_ready(3);
    let v1 = manifest(dir.path(), "hello", 3, &["--interval", "200ms"], WAVES);
    hub.ok(&["apply", "-f", v1.to_str().unwrap()]);
    hub.ok(&["rollout", "status", "hello", "--timeout", "60s"]);

    let status = agents[2].terminate();
    assert!(status.success(), "agent c stops cleanly");
    wait_until("c NotReady", || {
        hub.json("nodes")
            .iter()
            .any(|n| n["name"] == "c" && n["status"] == "NotReady")
            .then_some(())
    });
    let v2 = manifest(dir.path(), "hello", 3, &["--interval", "300ms"], WAVES);
    hub.ok(&["apply", "-f", v2.to_str().unwrap()]);
    let out = hub.ok(&["rollout", "status", "hello", "--timeout", "60s"]);
    assert!(out.contains("revision 2"), "{out}");

    agents[2] = start_agent(dir.path(), &hub.mqtt, "c");
    wait_until("c runs revision 2", || {
        let wls = hub.json("workloads");
        let on_c: Vec<&Value> = wls.iter().filter(|w| w["node"] == "c").collect();
        (!on_c.is_empty()
            && on_c
                .iter()
                .all(|w| w["revision"] == 2 && w["phase"] == "Running"))
        .then_some(())
    });
    assert_eq!(revisions(&hub, "hello"), [2, 2, 2]);
}

#[test]
fn every_node_workloads_follow_node_labels() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let lab = ["--label", "site=lab"];
    let mut a = start_agent_with(dir.path(), &hub.mqtt, "a", &lab);
    let _b = start_agent(dir.path(), &hub.mqtt, "b");
    hub.wait_nodes_ready(2);
    let app = manifest(
        dir.path(),
        "probe",
        1,
        &["--interval", "200ms"],
        "  nodeSelector: {site: lab}\n",
    );
    // every-node takes no replica count: rewrite the manifest's `replicas: 1`.
    let text = std::fs::read_to_string(&app)
        .unwrap()
        .replace("replicas: 1", "placement: every-node");
    std::fs::write(&app, text).unwrap();
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    let on = |hub: &Hub| -> Vec<String> {
        let mut v: Vec<String> = hub
            .json("workloads")
            .iter()
            .filter(|w| w["deployment"] == "probe" && w["phase"] == "Running")
            .filter_map(|w| w["node"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    wait_until("probe on a only", || (on(&hub) == ["a"]).then_some(()));

    let _c = start_agent_with(dir.path(), &hub.mqtt, "c", &lab);
    wait_until("a node that joins with the label gets it", || {
        (on(&hub) == ["a", "c"]).then_some(())
    });

    // Restarted without the label: it announces the new set and loses the workload.
    a.terminate();
    let _a = start_agent(dir.path(), &hub.mqtt, "a");
    wait_until("a node whose label is removed loses it", || {
        let wls = hub.json("workloads");
        let on_a = wls
            .iter()
            .any(|w| w["deployment"] == "probe" && w["node"] == "a");
        (!on_a && on(&hub) == ["c"]).then_some(())
    });
}
