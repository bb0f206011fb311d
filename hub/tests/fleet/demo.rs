//! The README's main command, `wasmfleet demo`, runs to completion: hub, 3 agents with
//! simulated devices, the sensor and alarm examples Running on different nodes, the alarm
//! switching on the sensor's readings, logs streamed, everything stopped.

use std::process::Command;

use crate::common::*;

/// As a user runs it after `cargo install`: the binaries copied to a directory of their own,
/// run from elsewhere, with no source tree: the example modules are embedded.
#[test]
fn demo_deploys_to_three_agents_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(wasmfleet_bin(), bin.join("wasmfleet")).unwrap();
    std::fs::copy(agent_bin(), bin.join("edge-agent")).unwrap();
    let elsewhere = dir.path().join("home");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = Command::new(bin.join("wasmfleet"))
        .current_dir(&elsewhere)
        .args([
            "demo",
            "--run-for",
            "4",
            "--http",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--mqtt", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("sensor and alarm Running"), "{stderr}");
    for node in ["demo-node-1", "demo-node-2", "demo-node-3"] {
        assert!(stdout.contains(node), "{node} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains("[sensor-0@demo-node-1] temp="),
        "no readings streamed:\n{stdout}"
    );
    // The simulated sensor starts at 24 C, rising: past the alarm's 25 C within seconds.
    assert!(
        stdout.contains("[alarm-0@demo-node-2] alarm on"),
        "the alarm on the other node did not switch:\n{stdout}"
    );
    assert!(stdout.contains("figures: apply_to_running_ms="), "{stdout}");
}
