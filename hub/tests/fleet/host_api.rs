//! The host API end to end: the examples from their own manifests on agents with simulated
//! devices, sensor → alarm across nodes through the broker, placement by devices, refusal of
//! ungranted imports at apply, and a KV store that survives `kill -9`.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Example `name` (its app.yaml and module, embedded in `wasmfleet`) written into `dir`.
fn example(dir: &Path, name: &str) -> PathBuf {
    wasmfleet_hub::cli::demo::write_example(dir, name).expect("embedded example")
}

/// Count of lines of `deployment`'s log containing `needle`.
fn count_lines(hub: &Hub, deployment: &str, needle: &str) -> usize {
    hub.logs(deployment, 1000)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Publishes `payload` on the application topic `relative` of namespace `default`.
fn publish_app(mqtt: &str, relative: &str, payload: &str) {
    publish_once(
        mqtt,
        "test-publisher",
        format!("wf/v1/app/default/{relative}"),
        payload.as_bytes().to_vec(),
        false,
    );
}

#[test]
fn sensor_drives_an_alarm_on_another_node_and_devices_decide_placement() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let _plain = start_agent(dir.path(), &hub.mqtt, "plain");
    let _a = start_agent_with(dir.path(), &hub.mqtt, "dev-a", &["--devices", "sim"]);
    let _b = start_agent_with(dir.path(), &hub.mqtt, "dev-b", &["--devices", "sim"]);
    hub.wait_nodes_ready(3);
    let wide = hub.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.lines()
            .any(|l| l.starts_with("dev-a") && l.contains("gpio:17,gpio:27,i2c-1,spidev0.0")),
        "{wide}"
    );

    // A module that imports more than its manifest grants is refused before anything runs.
    let sensor = example(dir.path(), "sensor");
    let text = std::fs::read_to_string(&sensor).unwrap();
    let greedy = sensor.with_file_name("greedy.yaml");
    std::fs::write(&greedy, text.replace("    i2c: [i2c-1]\n", "")).unwrap();
    let err = hub.fails(&["apply", "-f", greedy.to_str().unwrap()]);
    assert!(
        err.contains("wasmfleet_v1::i2c_open") && err.contains("capabilities.i2c"),
        "{err}"
    );

    hub.ok(&["apply", "-f", sensor.to_str().unwrap()]);
    let alarm = example(dir.path(), "alarm");
    hub.ok(&["apply", "-f", alarm.to_str().unwrap()]);
    let sensor_wl = hub.wait_phase("sensor", 1, "Running");
    let alarm_wl = hub.wait_phase("alarm", 1, "Running");
    let (s_node, a_node) = (&sensor_wl[0]["node"], &alarm_wl[0]["node"]);
    assert!(
        s_node != "plain" && a_node != "plain",
        "only nodes with the devices"
    );
    assert_ne!(s_node, a_node, "spread over the two device nodes");

    // The sensor reads the simulated BME280 (18..30 C) and publishes; the alarm, on the
    // other node, gets the readings through the broker and switches its LED.
    wait_until("sensor readings", || {
        (count_lines(&hub, "sensor", "temp=") >= 2).then_some(())
    });
    let reading = hub.logs("sensor", 1);
    let celsius: f32 = reading
        .split("temp=")
        .nth(1)
        .and_then(|t| t.trim().strip_suffix('C'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a reading: {reading}"));
    assert!((17.9..=30.1).contains(&celsius), "{celsius}");
    // A cold reading from elsewhere in the namespace turns the alarm off; the next warm one
    // from the sensor turns it on again (the drift starts at 24 C, rising past 25 C).
    wait_until("alarm on", || {
        (count_lines(&hub, "alarm", "alarm on") >= 1).then_some(())
    });
    publish_app(&hub.mqtt, "sensors/elsewhere/temp", "10.0");
    wait_until("alarm off after a cold reading", || {
        (count_lines(&hub, "alarm", "alarm off") >= 1).then_some(())
    });

    // Devices nobody offers: Pending, and the reason names them.
    std::fs::write(
        &greedy,
        text.replace("name: sensor", "name: remote")
            .replace("i2c: [i2c-1]", "i2c: [i2c-1, i2c-7]"),
    )
    .unwrap();
    hub.ok(&["apply", "-f", greedy.to_str().unwrap()]);
    let pending = hub.wait_phase("remote", 1, "Pending");
    let why = pending[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why == "0/3 nodes fit: 2 missing device i2c-7, 1 missing devices i2c-1, i2c-7",
        "{why}"
    );
}

#[test]
fn the_kv_store_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let mut agent = start_agent(dir.path(), &hub.mqtt, "n1");
    hub.wait_nodes_ready(1);
    let counter = example(dir.path(), "counter");
    // Count every 200 ms so the test is short.
    let text = std::fs::read_to_string(&counter).unwrap();
    std::fs::write(&counter, text.replace("interval: 1s", "interval: 200ms")).unwrap();
    hub.ok(&["apply", "-f", counter.to_str().unwrap()]);
    hub.wait_phase("counter", 1, "Running");
    let counts = |hub: &Hub| -> Vec<u64> {
        hub.logs("counter", 1000)
            .lines()
            .filter_map(|l| l.split("count=").nth(1)?.trim().parse().ok())
            .collect()
    };
    let before = wait_until("counting", || {
        let c = counts(&hub);
        (c.len() >= 5).then_some(c)
    });
    agent.kill();
    let last = *before.last().unwrap();
    let _agent = start_agent(dir.path(), &hub.mqtt, "n1");
    let after = wait_until("counting again after the crash", || {
        let c = counts(&hub);
        (c.iter().any(|&n| n > last + 2)).then_some(c)
    });
    // Never from 1 again: every count is larger than the one before (a write that made it to
    // disk but whose line did not make it off the node shows as a gap, not a repeat).
    assert!(
        after.windows(2).all(|w| w[1] > w[0]),
        "count restarted or repeated: {after:?}"
    );
}
