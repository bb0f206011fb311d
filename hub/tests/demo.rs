//! The README's main command, `wasmfleet demo`, runs to completion: hub, 3 agents, the
//! example module deployed and Running on all, logs streamed, everything stopped.

mod common;

use std::process::Command;

use common::*;

#[test]
fn demo_deploys_to_three_agents_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    agent_bin(); // fail early with a clear message if it was not built
    let out = Command::new(wasmfleet_bin())
        .args([
            "demo",
            "--run-for",
            "2",
            "--http",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
        .arg("--module")
        .arg(hello_wasm())
        .arg("--data")
        .arg(dir.path())
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("all 3 replicas Running"), "{stderr}");
    for node in ["demo-node-1", "demo-node-2", "demo-node-3"] {
        assert!(stdout.contains(node), "{node} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains("hello from hello-"),
        "no module output streamed:\n{stdout}"
    );
    assert!(stdout.contains("figures: apply_to_running_ms="), "{stdout}");
}
