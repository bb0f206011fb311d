//! The simulator against a hub it starts itself, small enough for every test run: it keeps
//! the simulator (and the hub's handling of a connect storm) from rotting.

use std::process::Command;

#[test]
fn three_hundred_nodes_converge() {
    let sim = env!("CARGO_BIN_EXE_wasmfleet-sim");
    let wasmfleet = std::path::Path::new(sim).with_file_name("wasmfleet");
    assert!(
        wasmfleet.exists(),
        "{} missing: run `cargo build --workspace` before the tests",
        wasmfleet.display()
    );
    let out = Command::new(sim)
        .args(["--nodes", "300", "--idle-secs", "6", "--timeout", "120s"])
        .arg("--wasmfleet")
        .arg(&wasmfleet)
        .output()
        .expect("run wasmfleet-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wasmfleet-sim failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("converged 300 nodes in "), "{stdout}");
    assert!(stdout.contains("convergence per node: p50"), "{stdout}");
    assert!(stdout.contains("idle control traffic per node"), "{stdout}");
}
