//! The same hub and agents against an external broker: a real mosquitto started here.

use std::process::Command;

use crate::common::*;

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
    let _broker = Proc::spawn(
        "mosquitto",
        Command::new(mosquitto).arg("-c").arg(&conf),
        &dir.path().join("mosquitto.log"),
    );
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

    // A hub that (re)starts later learns the fleet from retained messages alone: presence and
    // the latest status of every node, without waiting for any node to speak again.
    let retained = retained_node_messages(port, &["wf/v1/n/+/status", "wf/v1/n/+/online"]);
    for node in ["node-a", "node-b"] {
        let status = &retained[&format!("wf/v1/n/{node}/status")];
        let status: wasmfleet_proto::NodeStatus = wasmfleet_proto::decode(status).unwrap();
        assert_eq!(status.workloads.len(), 1, "{node}: {status:?}");
        assert_eq!(status.workloads[0].phase, wasmfleet_proto::Phase::Running);
        let online = &retained[&format!("wf/v1/n/{node}/online")];
        let online: wasmfleet_proto::Presence = wasmfleet_proto::decode(online).unwrap();
        assert!(matches!(online, wasmfleet_proto::Presence::Online(_)));
    }
    hub.ok(&["delete", "deployment", "hello"]);
    hub.wait_nodes_idle();
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Subscribes a fresh client to `filters` and collects the retained messages it is sent.
fn retained_node_messages(
    port: u16,
    filters: &[&str],
) -> std::collections::HashMap<String, Vec<u8>> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    use std::time::{Duration, Instant};
    let (client, mut conn) = Client::new(MqttOptions::new("retained-probe", "127.0.0.1", port), 16);
    for f in filters {
        client.subscribe(*f, QoS::AtLeastOnce).unwrap();
    }
    let mut out = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.retain => {
                out.insert(p.topic.clone(), p.payload.to_vec());
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("probe connection failed: {e}"),
        }
    }
    out
}
