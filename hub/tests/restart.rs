//! Restarts: the hub loses nothing across a restart, and an agent restarted while the hub is
//! down brings its workloads back on its own.

mod common;

use common::*;

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

    // Crash both; restart only the agent, with no hub and no broker anywhere.
    hub.proc.kill();
    agent.kill();
    let _agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    std::thread::sleep(std::time::Duration::from_secs(3));

    // The hub comes back with its store: deployment, node and placement are all there.
    let hub = start_hub(dir.path(), http, mqtt, None);
    assert_eq!(hub.json("deployments")[0]["name"], "hello");
    hub.wait_nodes_ready(1);
    let wls = hub.wait_phase("hello", 1, "Running");
    assert_eq!(wls[0]["node"], "node-a");
    assert_eq!(wls[0]["revision"], 1);

    // The instance started while the hub was down: by the time lines reach the new hub, its
    // counter (one line per 100 ms since the agent restarted) is well past the start.
    let counter = wait_until("log lines reach the restarted hub", || {
        let logs = hub.logs("hello", 5);
        let last = logs
            .lines()
            .last()?
            .rsplit_once('#')?
            .1
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(last)
    });
    assert!(
        counter >= 15,
        "instance only started after the hub returned (line #{counter})"
    );
    let nodes = hub.json("nodes");
    assert_eq!(
        nodes[0]["observedGeneration"],
        nodes[0]["desiredGeneration"]
    );
}
