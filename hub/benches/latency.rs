//! End-to-end latency of the host API through the broker: a reading published on
//! `sensors/bench/temp` (as the `sensor` example publishes) until the `alarm` example, on an
//! agent with simulated devices, has switched GPIO 17 (the agent logs each LED change).
//! Real processes on 127.0.0.1: `wasmfleet serve` (embedded broker) and `edge-agent
//! --devices sim`, release builds.
//!
//! Run: `cargo build --release -p edge-agent && cargo bench -p wasmfleet-hub --bench latency`
//! (`scripts/bench.sh` does). Prints one `figures:` line: p50, p90 and max over 200 readings
//! that each cross the threshold.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, MqttOptions, QoS};

const READINGS: usize = 200;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wasmfleet(hub: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmfleet"))
        .args(["--hub", hub])
        .args(args)
        .output()
        .expect("run wasmfleet")
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let wasmfleet_bin = PathBuf::from(env!("CARGO_BIN_EXE_wasmfleet"));
    let agent_bin = wasmfleet_bin.with_file_name("edge-agent");
    assert!(
        agent_bin.exists(),
        "{} missing: cargo build --release -p edge-agent",
        agent_bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let hub_url = format!("http://127.0.0.1:{http}");
    let _hub = Killed(
        Command::new(&wasmfleet_bin)
            .arg("serve")
            .arg("--data")
            .arg(dir.path().join("hub"))
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the hub"),
    );
    wait("the hub", || {
        wasmfleet(&hub_url, &["get", "nodes"]).status.success()
    });
    let mut agent = Command::new(&agent_bin)
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{mqtt}")])
        .args(["--node", "alarm-node", "--devices", "sim"])
        .arg("--data")
        .arg(dir.path().join("agent"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let stderr = agent.stderr.take().unwrap();
    let _agent = Killed(agent);
    let (lines_tx, lines) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let manifest = wasmfleet_hub::cli::demo::write_example(dir.path(), "alarm").unwrap();
    let applied = wasmfleet(&hub_url, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(applied.status.success(), "{applied:?}");
    wait("the alarm Running", || {
        let out = wasmfleet(&hub_url, &["get", "workloads"]);
        String::from_utf8_lossy(&out.stdout).contains("Running")
    });
    // The module subscribes in on_start; give the subscription a moment to be granted.
    std::thread::sleep(Duration::from_millis(300));

    let mut opts = MqttOptions::new("bench-sensor", "127.0.0.1", mqtt);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 64);
    std::thread::spawn(move || for _ in connection.iter() {});
    let mut took = Vec::with_capacity(READINGS);
    for i in 0..READINGS {
        let (reading, level) = match i % 2 {
            0 => ("30.0", "level=1"),
            _ => ("10.0", "level=0"),
        };
        while lines.try_recv().is_ok() {}
        let sent = Instant::now();
        client
            .publish(
                "wf/v1/app/default/sensors/bench/temp",
                QoS::AtLeastOnce,
                false,
                reading.as_bytes().to_vec(),
            )
            .unwrap();
        let changed_at = loop {
            let (at, line) = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("the LED did not change within 10 s");
            if line.contains("sim: LED changed") && line.contains(level) {
                break at;
            }
        };
        took.push(changed_at - sent);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "figures: publish_to_gpio_ms p50={:.2} p90={:.2} max={:.2} readings={READINGS}",
        ms(took[READINGS / 2]),
        ms(took[READINGS * 9 / 10]),
        ms(took[READINGS - 1]),
    );
}
