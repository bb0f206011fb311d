//! Node health: heartbeats catch what the Last Will cannot (a frozen agent behind an open
//! connection), replicas move after the grace period and come off the node when it returns;
//! cordon, drain and uncordon as in kubectl.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Sends `signal` (e.g. `STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

fn node<'a>(nodes: &'a [Value], name: &str) -> &'a Value {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {nodes:?}"))
}

/// Nodes holding a Running replica of `deployment`.
fn running_on(hub: &Hub, deployment: &str) -> Vec<String> {
    let mut on: Vec<String> = hub
        .json("workloads")
        .iter()
        .filter(|w| w["deployment"] == deployment && w["phase"] == "Running")
        .filter_map(|w| w["node"].as_str().map(str::to_owned))
        .collect();
    on.sort();
    on
}

#[test]
fn a_frozen_agent_goes_not_ready_its_replica_moves_and_comes_off_it_when_it_thaws() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub_with(
        dir.path(),
        free_port(),
        free_port(),
        None,
        &["--node-grace-secs", "5"],
    );
    // Heartbeats every 2 s: NotReady 6 s after the last one. (The default, 5 s, gives 15 s.)
    let beat = ["--heartbeat", "2s"];
    let agents: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| start_agent_with(dir.path(), &hub.mqtt, n, &beat))
        .collect();
    hub.wait_nodes_ready(3);
    let app = manifest(dir.path(), "hello", 2, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 2, "Running");
    let before = running_on(&hub, "hello");
    let victim = before[0].clone();
    let pid = agents.iter().find(|a| a.name == victim).unwrap().child.id();

    // SIGSTOP: the agent's TCP connection stays open (the kernel answers for it) and the
    // broker's keep-alive would take 45 s to fire its Last Will. Heartbeats notice first.
    signal(pid, "STOP");
    let frozen = Instant::now();
    wait_until("the frozen node NotReady", || {
        (node(&hub.json("nodes"), &victim)["status"] == "NotReady").then_some(())
    });
    let not_ready = frozen.elapsed();
    assert!(
        not_ready <= Duration::from_secs(15),
        "NotReady after {not_ready:?}"
    );
    let events = hub.ok(&["describe", "node", &victim]);
    assert!(events.contains("no heartbeat for"), "{events}");

    // After the grace period (5 s) the replica runs on the third node.
    wait_until("the replica Running elsewhere", || {
        let on = running_on(&hub, "hello");
        (on.len() == 2 && !on.contains(&victim)).then_some(())
    });
    let moved = frozen.elapsed() - not_ready;
    assert!(
        moved <= Duration::from_secs(5 + 10),
        "rescheduled {moved:?} after NotReady"
    );

    // Thawed: Ready with its next heartbeat, and the replica that moved away is stopped there
    // (its desired state no longer holds it), not run twice.
    signal(pid, "CONT");
    wait_until("the thawed node Ready and idle", || {
        let nodes = hub.json("nodes");
        let n = node(&nodes, &victim);
        (n["status"] == "Ready"
            && n["workloads"] == 0
            && n["observedGeneration"] == n["desiredGeneration"])
            .then_some(())
    });
    assert_eq!(running_on(&hub, "hello").len(), 2);
    let table = hub.ok(&["get", "nodes"]);
    assert!(
        table.contains("LAST SEEN") && table.contains(" ago"),
        "{table}"
    );

    // Cordon: a new replica does not land there. Drain: its replica moves. Uncordon: schedulable.
    let holder = running_on(&hub, "hello")[0].clone();
    let out = hub.ok(&["cordon", &holder]);
    assert!(out.contains(&format!("node/{holder} cordoned")), "{out}");
    assert_eq!(
        node(&hub.json("nodes"), &holder)["status"],
        "Ready,SchedulingDisabled"
    );
    let app = manifest(dir.path(), "hello", 3, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 3, "Running");
    let on = running_on(&hub, "hello");
    assert_eq!(on.iter().filter(|n| **n == holder).count(), 1, "{on:?}");

    let out = hub.ok(&["drain", &holder, "--timeout", "60s"]);
    assert!(out.contains("evicting workload/hello-"), "{out}");
    assert!(out.contains(&format!("node/{holder} drained")), "{out}");
    let n = node(&hub.json("nodes"), &holder).clone();
    assert_eq!(n["workloads"], 0, "{n}");
    hub.wait_phase("hello", 3, "Running");
    assert!(!running_on(&hub, "hello").contains(&holder));

    hub.ok(&["uncordon", &holder]);
    assert_eq!(node(&hub.json("nodes"), &holder)["status"], "Ready");
    let err = hub.fails(&["cordon", "no-such-node"]);
    assert!(err.contains("\"no-such-node\" not found"), "{err}");
}

/// Publishes `Offline` for `node`, not retained: the hub hears it, while the broker keeps the
/// node's retained `Online` (as when an announcement is lost on the way to the hub).
fn publish_stray_offline(mqtt: &str, node: &str) {
    let payload = wasmfleet_proto::encode(&wasmfleet_proto::Presence::Offline);
    let topic = wasmfleet_proto::topic::node_topic(node, wasmfleet_proto::topic::NodeTopic::Online);
    publish_once(mqtt, "stray-offline", topic, payload, false);
}

/// A node announces itself only when it connects. If the hub loses that announcement (its own
/// session dropped with its queue, a broker queue overflowed), the node keeps beating while
/// the hub does not know it: the hub reads the retained announcement again, and the node is
/// Ready within a few of its heartbeat intervals instead of never.
#[test]
fn a_node_beating_without_an_announcement_is_read_again_from_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let _agent = start_agent_with(dir.path(), &hub.mqtt, "lost", &["--heartbeat", "1s"]);
    hub.wait_nodes_ready(1);

    publish_stray_offline(&hub.mqtt, "lost");
    wait_until("the hub took the node for gone, then read it again", || {
        let events = hub.ok(&["describe", "node", "lost"]);
        let ready = node(&hub.json("nodes"), "lost")["status"] == "Ready";
        (events.contains("agent disconnected") && events.matches("NodeReady").count() >= 2 && ready)
            .then_some(())
    });
    let log = hub.proc.log_text();
    assert!(
        log.contains("reading again the retained announcements of nodes heard without one"),
        "{log}"
    );
}
