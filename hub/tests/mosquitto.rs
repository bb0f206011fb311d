//! The same hub and agents against an external broker: a real mosquitto started here.

mod common;

use std::process::Command;

use common::*;

#[test]
fn runs_against_an_external_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"),
    )
    .unwrap();
    let mosquitto = which("mosquitto")
        .expect("mosquitto is not installed: apt-get install -y mosquitto (the CI script does)");
    let _broker = {
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        Proc {
            child,
            name: "mosquitto".into(),
        }
    };
    wait_until("mosquitto listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });

    let broker = format!("mqtt://127.0.0.1:{port}");
    let hub = start_hub(dir.path(), free_port(), 0, Some(&broker));
    let _a = start_agent(dir.path(), &broker, "node-a");
    let _b = start_agent(dir.path(), &broker, "node-b");
    hub.wait_nodes_ready(2);
    let app = manifest(dir.path(), "hello", 2, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 2, "Running");
    wait_until("logs through mosquitto", || {
        hub.logs("hello", 20)
            .contains("hi from hello-")
            .then_some(())
    });
    hub.ok(&["delete", "deployment", "hello"]);
    wait_until("instances stopped", || {
        hub.json("nodes")
            .iter()
            .all(|n| n["workloads"] == 0 && n["observedGeneration"] == n["desiredGeneration"])
            .then_some(())
    });
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
