//! Property tests: every message round-trips, and no input (random, truncated, corrupted)
//! makes a decoder panic.

use proptest::prelude::*;
use wasmfleet_proto::*;

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn workload() -> impl Strategy<Value = WorkloadSpec> {
    (
        "[a-z0-9-]{1,20}",
        "[a-z0-9-]{1,20}",
        any::<u64>(),
        digest(),
        any::<u64>(),
        prop::collection::vec(".{0,12}", 0..4),
        prop::collection::vec(("[A-Z_]{1,8}", ".{0,12}"), 0..4),
        any::<u64>(),
        prop_oneof![
            Just(RestartPolicy::Always),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Never)
        ],
    )
        .prop_map(
            |(name, deployment, revision, digest, size, args, env, memory_bytes, restart)| {
                WorkloadSpec {
                    name,
                    deployment,
                    revision,
                    module: ModuleRef { digest, size },
                    args,
                    env: env
                        .into_iter()
                        .map(|(name, value)| EnvVar { name, value })
                        .collect(),
                    limits: Limits {
                        memory_bytes,
                        cpu_millis: (memory_bytes % 3 == 0).then_some(250),
                        max_run_ms: (memory_bytes % 5 == 0).then_some(memory_bytes / 7),
                    },
                    restart,
                    code: match memory_bytes % 3 {
                        0 => Code::Source,
                        1 => Code::Compiling,
                        _ => Code::Precompiled(ModuleRef {
                            digest,
                            size: size / 2,
                        }),
                    },
                    namespace: "default".into(),
                    config: vec![ConfigEntry {
                        key: "k".into(),
                        value: size.to_string(),
                    }],
                    capabilities: Capabilities {
                        gpio: vec![(size % 40) as u32],
                        kv_bytes: size,
                        ..Capabilities::default()
                    },
                }
            },
        )
}

fn desired() -> impl Strategy<Value = DesiredState> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(workload(), 0..5),
    )
        .prop_map(|(fleet, generation, workloads)| DesiredState {
            fleet,
            generation,
            workloads,
        })
}

fn status() -> impl Strategy<Value = NodeStatus> {
    let phase = prop_oneof![
        Just(Phase::Pending),
        Just(Phase::Running),
        Just(Phase::Succeeded),
        Just(Phase::Failed)
    ];
    let w = (
        "[a-z0-9-]{1,20}",
        any::<u64>(),
        phase,
        any::<u32>(),
        any::<Option<i32>>(),
        ".{0,30}",
    )
        .prop_map(
            |(name, revision, phase, restarts, exit_code, message)| WorkloadStatus {
                name,
                revision,
                phase,
                restarts,
                exit_code,
                message,
            },
        );
    (any::<u64>(), any::<u64>(), prop::collection::vec(w, 0..5)).prop_map(
        |(observed_fleet, observed_generation, workloads)| NodeStatus {
            observed_fleet,
            observed_generation,
            workloads,
        },
    )
}

proptest! {
    #[test]
    fn desired_round_trips(d in desired()) {
        prop_assert_eq!(decode::<DesiredState>(&encode(&d)).unwrap(), d);
    }

    #[test]
    fn status_round_trips(s in status()) {
        prop_assert_eq!(decode::<NodeStatus>(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn every_strict_prefix_is_rejected(d in desired()) {
        let bytes = encode(&d);
        for cut in 0..bytes.len() {
            prop_assert!(decode::<DesiredState>(&bytes[..cut]).is_err(), "prefix of {} bytes accepted", cut);
        }
    }

    #[test]
    fn trailing_garbage_is_rejected(d in desired(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = encode(&d);
        bytes.extend(extra);
        prop_assert!(matches!(decode::<DesiredState>(&bytes), Err(DecodeError::TrailingBytes(_))));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<DesiredState>(&bytes);
        let _ = decode::<NodeStatus>(&bytes);
        let _ = decode::<Presence>(&bytes);
        let _ = decode::<BlobRequest>(&bytes);
        let _ = decode::<BlobReply>(&bytes);
        let _ = decode::<LogBatch>(&bytes);
    }

    #[test]
    fn corrupted_frames_never_panic(d in desired(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(&d);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = decode::<DesiredState>(&bytes);
    }
}

#[test]
fn typed_errors_for_the_classic_failures() {
    assert_eq!(decode::<DesiredState>(&[]), Err(DecodeError::Empty));
    assert_eq!(
        decode::<DesiredState>(&[9, 0, 0]),
        Err(DecodeError::UnsupportedVersion {
            found: 9,
            expected: WIRE_VERSION
        })
    );
    assert_eq!(
        decode::<DesiredState>(&[WIRE_VERSION, 3]),
        Err(DecodeError::Truncated)
    );
    let huge = vec![WIRE_VERSION; MAX_FRAME_LEN + 1];
    assert!(matches!(
        decode::<DesiredState>(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
    // A length prefix claiming far more elements than bytes exist must not allocate or panic.
    assert!(decode::<DesiredState>(&[WIRE_VERSION, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
}
