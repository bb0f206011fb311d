//! Restarts: the hub loses nothing across a restart, and an agent restarted while the hub is
//! down brings its workloads back on its own.

use crate::common::*;

#[test]
fn hub_restart_loses_nothing_and_agents_run_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let mut hub = start_hub(dir.path(), http, mqtt, None);
    let mut agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    hub.wait_nodes_ready(1);
    let app = manifest(dir.path(), "hello", 1, &["--interval", "100ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 1, "Running");

    // The newest line stored before the crash.
    let last_id = |hub: &Hub| -> u64 {
        hub.ok(&["logs", "hello", "--tail", "1000", "-o", "json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["id"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let before = last_id(&hub);

    // Crash both; restart only the agent, with no hub and no broker anywhere. It starts the
    // workload from its persisted state: its log says so before any hub exists again.
    hub.proc.kill();
    agent.kill();
    let agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    wait_until("the agent restarts its workload without a hub", || {
        let log = agent.log_text();
        (log.contains("restored desired state from disk") && log.contains("started")).then_some(())
    });

    // The hub comes back with its store: deployment, node and placement are all there.
    let hub = start_hub(dir.path(), http, mqtt, None);
    assert_eq!(hub.json("deployments")[0]["name"], "hello");
    hub.wait_nodes_ready(1);
    let wls = hub.wait_phase("hello", 1, "Running");
    assert_eq!(wls[0]["node"], "node-a");
    assert_eq!(wls[0]["revision"], 1);

    // The instance that started before the hub returned is the one still running: the hub's
    // return did not restart it, and its output reaches the new hub.
    wait_until("log lines reach the restarted hub", || {
        hub.ok(&["logs", "hello", "--tail", "1000", "-o", "json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["id"].as_u64().is_some_and(|id| id > before))
            .then_some(())
    });
    let starts = agent
        .log_text()
        .lines()
        .filter(|l| l.contains("started") && l.contains("hello-0"))
        .count();
    assert_eq!(
        starts, 1,
        "started once, from disk, not again when the hub returned"
    );
    assert_eq!(wls[0]["restarts"], 0);
    let nodes = hub.json("nodes");
    assert_eq!(
        nodes[0]["observedGeneration"],
        nodes[0]["desiredGeneration"]
    );
}

/// A hub rebuilt from an empty store (a lost disk) counts generations from 1 again. Agents
/// that acted on generation N of the old store must follow the new one, not ignore it as
/// stale: desired states carry the identity of the store (the fleet) that issued them.
#[test]
fn a_hub_rebuilt_from_an_empty_store_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let mut hub = start_hub(dir.path(), http, mqtt, None);
    let agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    hub.wait_nodes_ready(1);
    let app = manifest(dir.path(), "hello", 1, &["--interval", "100ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 1, "Running");
    // Several generations on the old store.
    for replicas in [2, 1] {
        let text = std::fs::read_to_string(&app)
            .unwrap()
            .replace("replicas: 1", &format!("replicas: {replicas}"))
            .replace("replicas: 2", &format!("replicas: {replicas}"));
        std::fs::write(&app, text).unwrap();
        hub.ok(&["apply", "-f", app.to_str().unwrap()]);
        hub.wait_phase("hello", replicas, "Running");
    }

    hub.proc.kill();
    std::fs::remove_dir_all(dir.path().join("hub")).unwrap();
    let hub = start_hub(dir.path(), http, mqtt, None);
    hub.wait_nodes_ready(1);
    // The new store knows no deployment: the node stops what the old one asked for.
    wait_until(
        "the node follows the new store and stops the old workload",
        || {
            let log = agent.log_text();
            (log.contains("another fleet store")
                && log.contains("workload=hello-0")
                && log.contains("stopped"))
            .then_some(())
        },
    );
    // And what the new store asks for runs.
    let again = manifest(dir.path(), "again", 1, &["--interval", "100ms"], "");
    hub.ok(&["apply", "-f", again.to_str().unwrap()]);
    let wls = hub.wait_phase("again", 1, "Running");
    assert_eq!(wls[0]["node"], "node-a");
}
