//! A microcontroller as a first-class node: the firmware in QEMU (`mps2-an386`, Cortex-M4F),
//! attached over its UART (a TCP socket) to a gateway `edge-agent --mcu`, scheduled by the hub
//! like any node. The same `counter` module the Linux agents run is compiled by the hub for
//! Pulley, fetched in chunks, verified and run on the device; its lines reach `wasmfleet logs`;
//! a new revision rolls onto it; killing QEMU makes the node NotReady; restarting it brings the
//! workload back.
//!
//! Needs `qemu-system-arm` and the firmware build (`scripts/test.sh` does both: see
//! `firmware/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn firmware_elf() -> PathBuf {
    let elf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/target/thumbv7em-none-eabihf/release/wasmfleet-firmware-qemu");
    assert!(
        elf.exists(),
        "{} is missing: build it with `cd firmware && cargo build --release` (scripts/test.sh does)",
        elf.display()
    );
    elf
}

fn start_qemu(dir: &Path, port: u16) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/scripts/qemu.sh");
    let mut cmd = Command::new(script);
    cmd.arg(port.to_string()).arg(firmware_elf());
    Proc::spawn("qemu", &mut cmd, &dir.join(format!("qemu-{port}.log")))
}

fn counts(hub: &Hub) -> Vec<u64> {
    hub.logs("counter", 1000)
        .lines()
        .filter_map(|l| l.split("count=").nth(1)?.trim().parse().ok())
        .collect()
}

fn mcu_node(hub: &Hub) -> serde_json::Value {
    hub.json("nodes")
        .into_iter()
        .find(|n| n["name"] == "mcu-1")
        .unwrap_or_default()
}

#[test]
fn a_qemu_microcontroller_runs_counter_rolls_forward_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let uart = free_port();
    let mut qemu = start_qemu(dir.path(), uart);
    let mcu = format!("mcu-1=tcp:127.0.0.1:{uart}");
    let _gw = start_agent_with(dir.path(), &hub.mqtt, "gw", &["--mcu", &mcu]);
    hub.wait_nodes_ready(2);
    let node = mcu_node(&hub);
    let wide = hub.ok(&["get", "nodes", "-o", "wide"]);
    assert!(wide.contains("pulley32"), "{wide}");
    assert!(
        node.to_string().contains("wasmfleet.dev/device-class"),
        "{node}"
    );

    let counter = wasmfleet_hub::cli::demo::write_example(dir.path(), "counter").unwrap();
    // The same manifest as on Linux, plus a nodeSelector for the microcontroller.
    let text = std::fs::read_to_string(&counter).unwrap().replace(
        "  replicas: 1\n",
        "  replicas: 1\n  nodeSelector: {wasmfleet.dev/device-class: mcu}\n",
    );
    std::fs::write(&counter, text.replace("interval: 1s", "interval: 200ms")).unwrap();
    hub.ok(&["apply", "-f", counter.to_str().unwrap()]);
    let wls = hub.wait_phase("counter", 1, "Running");
    assert_eq!(wls[0]["node"], "mcu-1", "{wls:?}");
    wait_until("count= lines from the microcontroller", || {
        (counts(&hub).len() >= 3).then_some(())
    });

    // A new revision (another interval) replaces the instance on the device.
    std::fs::write(&counter, text.replace("interval: 1s", "interval: 300ms")).unwrap();
    hub.ok(&["apply", "-f", counter.to_str().unwrap()]);
    wait_until("revision 2 running on mcu-1", || {
        let wls = hub.json("workloads");
        wls.iter()
            .any(|w| w["deployment"] == "counter" && w["phase"] == "Running" && w["revision"] == 2)
            .then_some(())
    });

    // QEMU killed: the gateway says the node is gone at once.
    qemu.kill();
    wait_until("mcu-1 NotReady", || {
        (mcu_node(&hub)["status"] == "NotReady").then_some(())
    });
    let before = counts(&hub).len();
    let _qemu = start_qemu(dir.path(), uart);
    wait_until("mcu-1 Ready again", || {
        (mcu_node(&hub)["status"] == "Ready").then_some(())
    });
    hub.wait_phase("counter", 1, "Running");
    wait_until("counting again after the restart", || {
        (counts(&hub).len() >= before + 3).then_some(())
    });
}
