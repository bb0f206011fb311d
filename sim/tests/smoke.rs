//! The simulator against a hub it starts itself, small enough for every test run: it keeps
//! the simulator (and the hub's handling of a connect storm) from rotting.

use std::process::Command;

/// Runs the simulator with `args` against a hub it starts from this build, and returns what
/// it printed; fails the test if it failed.
fn run_sim(args: &[&str]) -> String {
    let sim = env!("CARGO_BIN_EXE_wasmfleet-sim");
    let wasmfleet = std::path::Path::new(sim).with_file_name("wasmfleet");
    assert!(
        wasmfleet.exists(),
        "{} missing: run `cargo build --workspace` before the tests",
        wasmfleet.display()
    );
    let out = Command::new(sim)
        .args(args)
        .arg("--wasmfleet")
        .arg(&wasmfleet)
        .output()
        .expect("run wasmfleet-sim");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wasmfleet-sim failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn three_hundred_nodes_converge() {
    let stdout = run_sim(&["--nodes", "300", "--idle-secs", "6", "--timeout", "120s"]);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("converged 300 nodes in "), "{stdout}");
    assert!(stdout.contains("convergence per node: p50"), "{stdout}");
    assert!(stdout.contains("idle control traffic per node"), "{stdout}");
}

#[test]
fn three_hundred_nodes_converge_through_a_mosquitto_the_hub_runs() {
    let stdout = run_sim(&[
        "--nodes",
        "300",
        "--idle-secs",
        "0",
        "--timeout",
        "120s",
        "--embedded-broker",
        "mosquitto",
    ]);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("converged 300 nodes in "), "{stdout}");
    // Its memory and CPU are counted with the hub's, and its memory apart too.
    assert!(stdout.contains("the broker it runs"), "{stdout}");
}

#[test]
fn a_new_module_reaches_a_hundred_nodes_per_node_and_fanned_out() {
    let stdout = run_sim(&[
        "--nodes",
        "100",
        "--idle-secs",
        "0",
        "--timeout",
        "120s",
        "--module-kib",
        "150",
        "--blob-path",
        "both",
    ]);
    for phase in ["per-node", "fan-out"] {
        let line = format!("fetch ({phase}): 100 nodes fetched and verified");
        assert!(stdout.contains(&line), "{stdout}");
    }
    // "fan-out vs per-node: 21.4x fewer chunk publications by the hub (28 vs 600), ..."
    let compare = stdout
        .lines()
        .find(|l| l.starts_with("fan-out vs per-node:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let counts = compare
        .split_once('(')
        .unwrap()
        .1
        .split_once(')')
        .unwrap()
        .0;
    let (fanned, per_node) = counts.split_once(" vs ").unwrap();
    let (fanned, per_node): (u64, u64) = (fanned.parse().unwrap(), per_node.parse().unwrap());
    assert!(
        per_node >= 100 * 5,
        "one reply per node per chunk: {stdout}"
    );
    assert!(fanned * 4 < per_node, "chunks fanned out: {stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("converged 100 nodes in "),
        "{stdout}"
    );
}
