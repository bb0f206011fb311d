//! The agent in-process, without a broker: autonomy from disk and garbage desired states.

mod common;

use std::time::Duration;

use edge_agent::blobs::BlobStore;
use edge_agent::{Agent, Config, state};
use wasmfleet_proto::{DesiredState, Phase, RestartPolicy};

use common::*;

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        mqtt_host: "127.0.0.1".into(),
        mqtt_port: closed_port(),
        node: "edge-1".into(),
        data_dir: dir.to_path_buf(),
        labels: vec![],
        memory_bytes: 1 << 30,
        max_workloads: 8,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_persisted_workloads_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello_bytes();
    let digest = BlobStore::open(dir.path()).unwrap().put(&bytes).unwrap();
    let mut spec = spec("hello-0", module_ref(&bytes), &["--interval", "100ms"]);
    spec.restart = RestartPolicy::Always;
    assert_eq!(spec.module.digest, digest);
    state::save_desired(
        dir.path(),
        &DesiredState {
            generation: 4,
            workloads: vec![spec],
        },
    )
    .unwrap();

    let agent = Agent::new(config(dir.path())).unwrap();
    let mut status = agent.status_watch();
    let mut logs = agent.log_tap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stop_rx.await;
    }));

    let running = status.wait_for(|s| {
        s.observed_generation == 4
            && s.workloads
                .first()
                .is_some_and(|w| w.phase == Phase::Running)
    });
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("never Running")
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(60), logs.recv())
            .await
            .expect("no output")
            .unwrap();
        if line.line.starts_with("hi from hello-0 on edge-1 #") {
            seen.push(line.line);
        }
    }
    assert_eq!(
        seen,
        [
            "hi from hello-0 on edge-1 #1",
            "hi from hello-0 on edge-1 #2"
        ]
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown hung")
        .unwrap();
    assert!(
        dir.path()
            .join("cache")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "compiled module cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_desired_state_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(config(dir.path())).unwrap();
    let topic = "wf/v1/n/edge-1/desired";
    let good = DesiredState {
        generation: 5,
        workloads: vec![],
    };
    agent.handle_desired(topic, &wasmfleet_proto::encode(&good));
    assert_eq!(agent.desired(), &good);

    let mut next = good.clone();
    next.generation = 6;
    next.workloads
        .push(spec("x-0", module_ref(b"whatever"), &[]));
    let full = wasmfleet_proto::encode(&next);
    for garbage in [
        &full[..full.len() - 3],
        b"",
        b"\x01\xff\xff\xff",
        b"\x07not-our-version",
        &[full.as_slice(), b"!"].concat(),
    ] {
        agent.handle_desired(topic, garbage);
        assert_eq!(agent.desired(), &good, "kept after {garbage:?}");
        assert_eq!(
            state::load_desired(dir.path()),
            Some(good.clone()),
            "disk kept too"
        );
    }
    // And a valid one afterwards is accepted (even going backwards in generation).
    let older = DesiredState {
        generation: 2,
        workloads: vec![],
    };
    agent.handle_desired(topic, &wasmfleet_proto::encode(&older));
    assert_eq!(agent.desired(), &older);
    assert_eq!(state::load_desired(dir.path()), Some(older));
}
