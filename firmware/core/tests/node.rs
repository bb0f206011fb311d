//! The node end to end through its inputs: a gateway syncs, the hub's desired state arrives,
//! the artifact is fetched in chunks and verified, the workload starts, crashes, restarts after
//! back-off, is updated and removed, and bad input (corrupt chunks, uncompilable profiles,
//! duplicate and stale states) leaves it correct.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmfleet_fw_core::{Effect, Exit, Node, NodeConfig};
use wasmfleet_proto::link::{Downlink, Uplink};
use wasmfleet_proto::*;

const S: Duration = Duration::from_secs(1);

fn config() -> NodeConfig {
    NodeConfig {
        agent_version: "0.1.0".into(),
        capacity: Capacity {
            memory_bytes: 1 << 20,
            max_workloads: 2,
        },
        labels: vec![],
        devices: vec!["i2c-1".into()],
        artifact_region: 64 * 1024,
        sector: 4096,
    }
}

fn artifact(seed: u8, len: usize) -> (Vec<u8>, ModuleRef) {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let r = ModuleRef {
        digest: Digest(Sha256::digest(&bytes).into()),
        size: len as u64,
    };
    (bytes, r)
}

fn spec(name: &str, revision: u64, code: Code) -> WorkloadSpec {
    WorkloadSpec {
        name: name.into(),
        deployment: "counter".into(),
        revision,
        module: ModuleRef {
            digest: Digest([9; 32]),
            size: 10,
        },
        args: vec![],
        env: vec![],
        limits: Limits {
            memory_bytes: 256 << 10,
            cpu_millis: None,
            max_run_ms: None,
        },
        restart: RestartPolicy::Always,
        code,
        namespace: "default".into(),
        config: vec![],
        capabilities: Capabilities::default(),
    }
}

fn desired(generation: u64, workloads: Vec<WorkloadSpec>) -> Downlink {
    Downlink::Desired(DesiredState {
        fleet: 1,
        generation,
        workloads,
    })
}

fn sent(effects: &[Effect]) -> Vec<&Uplink> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(u) => Some(u),
            _ => None,
        })
        .collect()
}

fn last_status(effects: &[Effect]) -> Option<NodeStatus> {
    sent(effects).into_iter().rev().find_map(|u| match u {
        Uplink::Status(s) => Some(s.clone()),
        _ => None,
    })
}

/// Answers blob requests from `bytes` until the download ends; returns the effects after the
/// last chunk and the bytes written to the region.
fn serve(node: &mut Node, first: &[Effect], bytes: &[u8], now: Duration) -> (Vec<Effect>, Vec<u8>) {
    let mut region = vec![0xffu8; 64 * 1024];
    let mut effects = first.to_vec();
    loop {
        let req = sent(&effects).into_iter().find_map(|u| match u {
            Uplink::BlobRequest(r) => Some(r.clone()),
            _ => None,
        });
        for e in &effects {
            if let Effect::Write { offset, data } = e {
                region[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
            }
        }
        let Some(req) = req else {
            return (effects, region);
        };
        assert!(req.len <= link::MCU_BLOB_CHUNK);
        let end = (req.offset + u64::from(req.len)) as usize;
        effects = node.on_link(
            Downlink::Blob(BlobReply::Chunk {
                digest: req.digest,
                offset: req.offset,
                total: bytes.len() as u64,
                data: bytes[req.offset as usize..end].to_vec(),
            }),
            now,
        );
    }
}

use wasmfleet_proto::link;

#[test]
fn sync_announces_an_mcu_with_its_label_and_pulley_profile() {
    let mut node = Node::new(config());
    let out = node.on_link(
        Downlink::Sync {
            node: "mcu-1".into(),
            unix_ms: 5_000,
        },
        2 * S,
    );
    let Uplink::Hello(h) = sent(&out)[0] else {
        panic!("{out:?}")
    };
    assert_eq!(h.device_class, DeviceClass::Mcu);
    assert_eq!(h.engine.target, "pulley32");
    assert_eq!(h.engine.settings, engine::MCU_SETTINGS_FINGERPRINT);
    assert!(!h.engine.compiler);
    assert!(
        h.labels
            .iter()
            .any(|l| l.key == "wasmfleet.dev/device-class" && l.value == "mcu")
    );
    assert_eq!(node.unix_ms(3 * S), 6_000);
    assert_eq!(node.name(), "mcu-1");
}

#[test]
fn a_synced_node_beats_right_away_and_every_interval() {
    let beats = |out: &[Effect]| {
        sent(out)
            .iter()
            .filter(|u| matches!(u, Uplink::Heartbeat(b) if b.interval_ms == 5_000))
            .count()
    };
    let mut node = Node::new(config());
    assert_eq!(
        beats(&node.tick(10 * S)),
        0,
        "silent before the gateway is known"
    );
    let sync = Downlink::Sync {
        node: "mcu-1".into(),
        unix_ms: 0,
    };
    assert_eq!(beats(&node.on_link(sync, 10 * S)), 1);
    assert_eq!(beats(&node.tick(14 * S)), 0);
    assert_eq!(beats(&node.tick(15 * S)), 1);
    assert_eq!(beats(&node.tick(16 * S)), 0);
    assert_eq!(beats(&node.tick(20 * S)), 1);
}

#[test]
fn fetches_verifies_starts_restarts_updates_and_stops() {
    let mut node = Node::new(config());
    let (bytes, a1) = artifact(3, 5000);
    let w1 = spec("counter-0", 1, Code::Precompiled(a1));
    let out = node.on_link(desired(1, vec![w1.clone()]), S);
    assert!(
        matches!(out[0], Effect::Erase(e) if e.offset == 0 && e.len == 5000),
        "{out:?}"
    );
    let st = last_status(&out).unwrap();
    assert_eq!(st.workloads[0].phase, Phase::Pending);
    assert!(
        st.workloads[0].message.contains("fetching artifact"),
        "{st:?}"
    );

    let (out, region) = serve(&mut node, &out, &bytes, S);
    assert_eq!(&region[..5000], &bytes[..]);
    let start = out.iter().find_map(|e| match e {
        Effect::Start { spec, artifact } => Some((spec.clone(), *artifact)),
        _ => None,
    });
    assert_eq!(
        start.as_ref().map(|(s, a)| (&s.name[..], a.len)),
        Some(("counter-0", 5000))
    );
    assert_eq!(
        last_status(&out).unwrap().workloads[0].phase,
        Phase::Running
    );

    // A duplicate of the same desired state changes nothing.
    assert!(node.on_link(desired(1, vec![w1.clone()]), S).is_empty());

    // A trap: Failed while backing off, restarted after 1 s, with the restart counted.
    let out = node.on_exit(
        "counter-0",
        Exit::failure(None, "wasm trap: unreachable"),
        2 * S,
    );
    let st = last_status(&out).unwrap();
    assert_eq!(st.workloads[0].phase, Phase::Failed);
    assert!(st.workloads[0].message.contains("unreachable"), "{st:?}");
    assert!(
        !node
            .tick(2 * S + S / 2)
            .iter()
            .any(|e| matches!(e, Effect::Start { .. }))
    );
    let out = node.tick(3 * S);
    assert!(
        out.iter().any(|e| matches!(e, Effect::Start { .. })),
        "{out:?}"
    );
    assert_eq!(last_status(&out).unwrap().workloads[0].restarts, 1);

    // A new revision: the old instance stops, the new artifact is fetched and started.
    let (bytes2, a2) = artifact(5, 3000);
    let w2 = spec("counter-0", 2, Code::Precompiled(a2));
    let out = node.on_link(desired(2, vec![w2]), 4 * S);
    assert_eq!(out[0], Effect::Stop("counter-0".into()));
    let (out, _) = serve(&mut node, &out, &bytes2, 4 * S);
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Start { spec, .. } if spec.revision == 2))
    );
    // Removed from the desired state: stopped, and reported with no workloads.
    let out = node.on_link(desired(3, vec![]), 5 * S);
    assert_eq!(out[0], Effect::Stop("counter-0".into()));
    assert!(last_status(&out).unwrap().workloads.is_empty());
    // An older generation (a stale retained message) is ignored.
    assert!(node.on_link(desired(2, vec![w1]), 6 * S).is_empty());
}

#[test]
fn a_corrupt_artifact_is_refetched_and_a_lost_chunk_asked_again() {
    let mut node = Node::new(config());
    let (bytes, a) = artifact(7, 100);
    let out = node.on_link(desired(1, vec![spec("w-0", 1, Code::Precompiled(a))]), S);
    assert!(
        sent(&out)
            .iter()
            .any(|u| matches!(u, Uplink::BlobRequest(_)))
    );
    // Nothing comes back: asked again after the timeout.
    let out = node.tick(S + wasmfleet_fw_core::fetch::REQUEST_TIMEOUT);
    assert!(
        sent(&out)
            .iter()
            .any(|u| matches!(u, Uplink::BlobRequest(r) if r.offset == 0))
    );
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    let out = node.on_link(
        Downlink::Blob(BlobReply::Chunk {
            digest: a.digest,
            offset: 0,
            total: 100,
            data: bad,
        }),
        5 * S,
    );
    let st = last_status(&out).unwrap();
    assert!(
        st.workloads[0].message.contains("arrived corrupt"),
        "{st:?}"
    );
    assert!(!out.iter().any(|e| matches!(e, Effect::Start { .. })));
    // Retried after FETCH_RETRY, and this time it arrives intact.
    let out = node.tick(5 * S + wasmfleet_fw_core::node::FETCH_RETRY);
    let (out, _) = serve(&mut node, &out, &bytes, 11 * S);
    assert!(
        out.iter().any(|e| matches!(e, Effect::Start { .. })),
        "{out:?}"
    );
}

#[test]
fn what_an_mcu_cannot_run_is_reported_not_attempted() {
    let mut node = Node::new(config());
    let (_, big) = artifact(1, 65 * 1024);
    let out = node.on_link(
        desired(
            1,
            vec![
                spec("a-0", 1, Code::Source),
                spec("b-0", 1, Code::Compiling),
                spec("c-0", 1, Code::Precompiled(big)),
            ],
        ),
        S,
    );
    let st = last_status(&out).unwrap();
    let by = |n: &str| st.workloads.iter().find(|w| w.name == n).unwrap().clone();
    assert_eq!(by("a-0").phase, Phase::Failed);
    assert!(by("a-0").message.contains("no compiler"), "{st:?}");
    assert_eq!(by("b-0").phase, Phase::Pending);
    assert!(by("c-0").message.contains("does not fit"), "{st:?}");
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::Erase(_) | Effect::Start { .. }))
    );
}

#[test]
fn app_messages_are_delivered_and_filters_sent_once_per_change() {
    let mut node = Node::new(config());
    let out = node.on_link(
        Downlink::AppMessage {
            topic: "wf/v1/app/default/t".into(),
            payload: b"x".to_vec(),
        },
        S,
    );
    assert!(matches!(&out[..], [Effect::Deliver { .. }]));
    let f = vec![
        "wf/v1/app/default/b".to_string(),
        "wf/v1/app/default/a".into(),
    ];
    assert!(node.app_filters(f.clone()).is_some());
    assert!(node.app_filters(f).is_none());
}
