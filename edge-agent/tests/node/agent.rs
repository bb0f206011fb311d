//! The agent in-process, without a broker: autonomy from disk and garbage desired states.

use std::time::Duration;

use edge_agent::blobs::BlobStore;
use edge_agent::{Agent, Config, state};
use wasmfleet_common::BrokerUrl;
use wasmfleet_proto::{BlobReply, DesiredState, Phase, RestartPolicy};

use crate::common::*;

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        broker: BrokerUrl {
            host: "127.0.0.1".into(),
            port: closed_port(),
        },
        node: "edge-1".into(),
        data_dir: dir.to_path_buf(),
        labels: vec![],
        memory_bytes: 1 << 30,
        max_workloads: 8,
        log_limits: Default::default(),
        devices: Default::default(),
        mcus: vec![],
        heartbeat: std::time::Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_persisted_workloads_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello_bytes();
    // The node holds only the hub's artifact, as it would after fetching it.
    let artifact = precompile(&bytes);
    let digest = BlobStore::open(dir.path()).unwrap().put(&artifact).unwrap();
    let mut spec = with_artifact(
        spec("hello-0", module_ref(&bytes), &["--interval", "100ms"]),
        &artifact,
    );
    spec.restart = RestartPolicy::Always;
    assert_eq!(
        spec.code,
        wasmfleet_proto::Code::Precompiled(module_ref(&artifact))
    );
    assert_eq!(module_ref(&artifact).digest, digest);
    state::save_desired(
        dir.path(),
        &DesiredState {
            fleet: 1,
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
        !BlobStore::open(dir.path())
            .unwrap()
            .has(&module_ref(&bytes).digest),
        "the source module was never needed"
    );
}

/// Raw wasm reaches an agent without a compiler only if its hub could not precompile for it:
/// the workload fails with a reason that says what to do, and nothing is fetched.
#[cfg(not(feature = "compiler"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_compiler_raw_wasm_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(config(dir.path())).unwrap();
    let status = agent.status_watch();
    let module = module_ref(&hello_bytes());
    let desired = DesiredState {
        fleet: 1,
        generation: 1,
        workloads: vec![spec("w-0", module, &[])],
    };
    agent.handle_desired("wf/v1/n/edge-1/desired", &wasmfleet_proto::encode(&desired));
    let st = status.borrow().clone();
    let w = &st.workloads[0];
    assert_eq!(w.phase, Phase::Failed);
    assert!(
        w.message.contains("this agent has no compiler")
            && w.message.contains(&module.digest.short())
            && w.message.contains("feature `compiler`"),
        "{}",
        w.message
    );
    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.part_len(&module.digest), 0, "nothing fetched");
}

/// The agent holds to the capacity it announced, whatever a hub asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_workloads_than_announced_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_workloads = 1;
    let mut agent = Agent::new(config).unwrap();
    let status = agent.status_watch();
    let artifact = module_ref(&[1u8; 10]);
    let code = wasmfleet_proto::Code::Precompiled(artifact);
    let mut a = spec("a-0", artifact, &[]);
    let mut b = spec("b-0", artifact, &[]);
    (a.code, b.code) = (code, code);
    let desired = DesiredState {
        fleet: 1,
        generation: 1,
        workloads: vec![a, b],
    };
    agent.handle_desired("wf/v1/n/edge-1/desired", &wasmfleet_proto::encode(&desired));
    let st = status.borrow().clone();
    assert_eq!(st.workloads[0].phase, Phase::Pending, "a-0 is admitted");
    assert_eq!(st.workloads[1].phase, Phase::Failed);
    assert!(
        st.workloads[1].message.contains("at most 1 workloads"),
        "{}",
        st.workloads[1].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_desired_state_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(config(dir.path())).unwrap();
    let topic = "wf/v1/n/edge-1/desired";
    let good = DesiredState {
        fleet: 1,
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
    // A stale retained state (an older generation of the same fleet) is ignored too.
    let older = DesiredState {
        fleet: 1,
        generation: 2,
        workloads: vec![spec("stale-0", module_ref(b"old"), &[])],
    };
    agent.handle_desired(topic, &wasmfleet_proto::encode(&older));
    assert_eq!(agent.desired(), &good, "a stale state is not acted on");
    assert_eq!(state::load_desired(dir.path()), Some(good.clone()));
    // A newer one is accepted, and so is any state of another fleet (the hub was rebuilt
    // from an empty store and counts generations from 1 again).
    let newer = DesiredState {
        fleet: 1,
        generation: 6,
        workloads: vec![],
    };
    agent.handle_desired(topic, &wasmfleet_proto::encode(&newer));
    assert_eq!(agent.desired(), &newer);
    let rebuilt = DesiredState {
        fleet: 2,
        generation: 1,
        workloads: vec![],
    };
    agent.handle_desired(topic, &wasmfleet_proto::encode(&rebuilt));
    assert_eq!(agent.desired(), &rebuilt);
    assert_eq!(state::load_desired(dir.path()), Some(rebuilt));
}

/// A chunk nobody asked for, published on the node's blob topic by anyone who can, must not
/// reach the partial download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_blob_reply_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(config(dir.path())).unwrap();
    let module = module_ref(&[7u8; 100]);
    // The agent fetches this blob (an artifact, as a hub would name it).
    let w = with_artifact(spec("w-0", module, &[]), &[7u8; 100]);
    let desired = DesiredState {
        fleet: 1,
        generation: 1,
        workloads: vec![w],
    };
    agent.handle_desired("wf/v1/n/edge-1/desired", &wasmfleet_proto::encode(&desired));
    let forged = BlobReply::Chunk {
        digest: module.digest,
        offset: 0,
        total: module.size,
        data: vec![0xee; 100],
    };
    agent.handle_blob("wf/v1/n/edge-1/blob", &wasmfleet_proto::encode(&forged));
    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.part_len(&module.digest), 0, "nothing written");
    assert!(!store.has(&module.digest));
}
