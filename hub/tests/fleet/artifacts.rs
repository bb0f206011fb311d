//! Compile once, at the hub: one artifact per engine profile (cross-compiled for another
//! architecture), the source module for a profile the hub cannot serve, and agents that
//! fetch and run only the artifact.

use std::sync::mpsc;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use wasmfleet_proto::{
    Capacity, Code, DesiredState, DeviceClass, EngineProfile, Hello, Presence, decode, encode,
};

use crate::common::*;

/// A node that is only an MQTT client: it announces `engine` and hands over the desired
/// states it is sent. (It never runs anything, so the test can pose as any architecture.)
struct FakeNode {
    _client: Client,
    desired: mpsc::Receiver<DesiredState>,
}

fn fake_node(mqtt: &str, name: &str, engine: EngineProfile) -> FakeNode {
    let port: u16 = mqtt.rsplit(':').next().unwrap().parse().unwrap();
    let mut opts = MqttOptions::new(name, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 16);
    let hello = Presence::Online(Hello {
        agent_version: "fake".into(),
        device_class: DeviceClass::Linux,
        capacity: Capacity {
            memory_bytes: 1 << 30,
            max_workloads: 8,
        },
        labels: vec![],
        engine,
        devices: vec![],
    });
    client
        .subscribe(format!("wf/v1/n/{name}/desired"), QoS::AtLeastOnce)
        .unwrap();
    client
        .publish(
            format!("wf/v1/n/{name}/online"),
            QoS::AtLeastOnce,
            true,
            encode(&hello),
        )
        .unwrap();
    let (tx, desired) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(state) = decode::<DesiredState>(&p.payload) {
                        let _ = tx.send(state);
                    }
                }
                Ok(_) => {}
                // Dropped, or taken over by a new session of the same node: done.
                Err(_) => break,
            }
        }
    });
    FakeNode {
        _client: client,
        desired,
    }
}

impl FakeNode {
    /// The first desired state with a workload whose code is decided (not `Compiling`).
    fn wait_code(&self) -> Code {
        self.wait_code_other_than(None)
    }

    /// [`FakeNode::wait_code`], skipping states that still name `old`.
    fn wait_code_other_than(&self, old: Option<Code>) -> Code {
        wait_until("a desired state with decided code", || {
            while let Ok(state) = self.desired.try_recv() {
                if let Some(w) = state.workloads.first()
                    && w.code != Code::Compiling
                    && Some(w.code) != old
                {
                    return Some(w.code);
                }
            }
            None
        })
    }
}

fn profile(target: &str, wasmtime: &str) -> EngineProfile {
    let mut p = wasmfleet_common::engine::host_profile(false);
    p.target = target.into();
    p.wasmtime = wasmtime.into();
    p
}

#[test]
fn each_engine_profile_gets_one_artifact_and_unknown_ones_get_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let _agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    let arm = fake_node(
        &hub.mqtt,
        "arm-1",
        profile("aarch64-unknown-linux-gnu", "50.0.1"),
    );
    let old = fake_node(
        &hub.mqtt,
        "old-1",
        profile("x86_64-unknown-linux-gnu", "49.0.0"),
    );
    hub.wait_nodes_ready(3);

    let app = manifest(dir.path(), "hello", 3, &["--interval", "200ms"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);

    // The aarch64 node is sent an artifact the hub cross-compiled: an AArch64 ELF object.
    let Code::Precompiled(artifact) = arm.wait_code() else {
        panic!("the aarch64 node got no artifact")
    };
    let (status, bytes) = http(&hub, "GET", &format!("/v1/blobs/{}", artifact.digest), b"");
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, artifact.size);
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "EM_AARCH64"
    );

    // Another wasmtime version cannot load the hub's artifacts: it gets the source module.
    assert_eq!(old.wait_code(), Code::Source);

    // The real agent runs the artifact for the hub's own profile and never fetches the source.
    wait_until("node-a runs its replica", || {
        hub.json("workloads")
            .iter()
            .any(|w| w["node"] == "node-a" && w["phase"] == "Running")
            .then_some(())
    });
    let module = wasmfleet_common::digest::sha256(&std::fs::read(hello_wasm()).unwrap());
    let agent_blobs: Vec<String> = std::fs::read_dir(dir.path().join("node-a/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(agent_blobs.len(), 1, "{agent_blobs:?}");
    assert_ne!(
        agent_blobs[0],
        module.to_hex(),
        "the agent holds the artifact only"
    );

    // Operators see each node's engine.
    let wide = hub.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("aarch64-unknown-linux-gnu/wasmtime-50.0.1"),
        "{wide}"
    );
    assert!(wide.contains("wasmtime-49.0.0"), "{wide}");

    // Compiled once per profile: the module, the host artifact and the aarch64 one.
    let hub_blobs = || {
        std::fs::read_dir(dir.path().join("hub/blobs"))
            .unwrap()
            .count()
    };
    assert_eq!(hub_blobs(), 3);

    // A node comes back with another engine (say, a new OS build): its workload waits
    // (Compiling) while the hub compiles for the new profile, then it gets that artifact.
    drop(arm);
    let upgraded = fake_node(
        &hub.mqtt,
        "arm-1",
        profile("aarch64-unknown-linux-musl", "50.0.1"),
    );
    let old = Some(Code::Precompiled(artifact));
    let Code::Precompiled(new_artifact) = upgraded.wait_code_other_than(old) else {
        panic!("the upgraded node got no artifact")
    };
    let (_, bytes) = http(
        &hub,
        "GET",
        &format!("/v1/blobs/{}", new_artifact.digest),
        b"",
    );
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "EM_AARCH64"
    );
    assert_eq!(hub_blobs(), 4);

    // Scaling out compiles nothing more.
    std::fs::write(
        &app,
        std::fs::read_to_string(&app)
            .unwrap()
            .replace("replicas: 3", "replicas: 6"),
    )
    .unwrap();
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hub_blobs(), 4);
}
