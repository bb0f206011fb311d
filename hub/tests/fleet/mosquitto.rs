//! The same hub and agents on mosquitto: one started here as an external broker, and one the
//! hub runs itself (`--embedded-broker mosquitto`).

use std::process::Command;

use wasmfleet_hub::mqtt::mosquitto::find_program;
use wasmfleet_hub::process::child_pids;

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
    let mosquitto = find_program("mosquitto")
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

#[test]
fn the_hub_runs_mosquitto_restarts_it_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (http, port) = (free_port(), free_port());
    let own = ["--embedded-broker", "mosquitto"];
    let mut hub = start_hub_with(dir.path(), http, port, None, &own);
    let first = mosquitto_of(&hub);
    let _a = start_agent(dir.path(), &hub.mqtt, "node-a");
    let _b = start_agent(dir.path(), &hub.mqtt, "node-b");
    hub.wait_nodes_ready(2);
    let app = manifest(dir.path(), "hello", 2, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 2, "Running");

    // mosquitto crashes: the hub starts it again, and the nodes find their desired states
    // retained in it again (a restarted mosquitto holds none: the hub republished them).
    kill(first, libc::SIGKILL);
    let second = wait_until("the hub starts mosquitto again", || {
        let pid = child_pids(hub.proc.child.id()).into_iter().next()?;
        let listens = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        (pid != first && listens).then_some(pid)
    });
    wait_until("desired states retained in the new mosquitto", || {
        let retained = retained_node_messages(port, &["wf/v1/n/+/desired"]);
        (retained.len() == 2).then_some(())
    });
    let after = manifest(dir.path(), "after", 2, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", after.to_str().unwrap()]);
    hub.wait_phase("after", 2, "Running");
    hub.wait_phase("hello", 2, "Running");
    assert!(
        hub.proc
            .log_text()
            .contains("mosquitto exited; starting it again"),
        "{}",
        hub.proc.log_text()
    );

    // A clean stop stops mosquitto too, and frees the port for the next hub.
    assert!(hub.proc.terminate().success());
    assert!(!running(second), "mosquitto outlived the hub's shutdown");
    let mut hub = start_hub_with(dir.path(), http, port, None, &own);
    hub.wait_nodes_ready(2);
    hub.wait_phase("after", 2, "Running");

    // A hub killed outright takes mosquitto with it (a kept mosquitto would hold the port).
    let third = mosquitto_of(&hub);
    hub.proc.kill();
    wait_until("mosquitto stops with the killed hub", || {
        (!running(third)).then_some(())
    });
}

#[test]
fn a_mosquitto_that_cannot_run_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |mqtt: String, extra: &[&std::ffi::OsStr]| {
        let log = dir.path().join("serve.log");
        let mut hub = Proc::spawn(
            "hub",
            Command::new(wasmfleet_bin())
                .args(["serve", "--embedded-broker", "mosquitto"])
                .args(extra)
                .arg("--data")
                .arg(dir.path().join("hub"))
                .args(["--http", &format!("127.0.0.1:{}", free_port())])
                .args(["--mqtt", &mqtt]),
            &log,
        );
        // A hub that wrongly starts is stopped by the wait running out, not left hanging.
        let status = wait_until("the hub refuses to start", || hub.child.try_wait().unwrap());
        assert!(!status.success());
        hub.log_text()
    };
    let missing = dir.path().join("no-mosquitto");
    let err = serve(
        format!("127.0.0.1:{}", free_port()),
        &["--mosquitto".as_ref(), missing.as_os_str()],
    );
    assert!(
        err.contains(&format!("cannot run {}", missing.display())),
        "{err}"
    );
    // Another process holds the port: named, not taken for a mosquitto that listens.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = serve(addr.to_string(), &[]);
    assert!(
        err.contains(&format!("mosquitto cannot listen on {addr}")),
        "{err}"
    );
}

/// The mosquitto the hub runs (its only child), checked by name.
fn mosquitto_of(hub: &Hub) -> u32 {
    let pid = wait_until("the hub's mosquitto", || {
        child_pids(hub.proc.child.id()).into_iter().next()
    });
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "mosquitto");
    pid
}

/// Whether `pid` still runs (a zombie nobody reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
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
