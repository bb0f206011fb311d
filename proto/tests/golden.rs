//! Golden bytes: these pin the wire format. If one fails, the change breaks every deployed
//! agent and firmware: bump `WIRE_VERSION` and keep a decoder for the old one instead.

use wasmfleet_proto::*;

fn sample_desired() -> DesiredState {
    DesiredState {
        generation: 3,
        workloads: vec![WorkloadSpec {
            name: "hello-0".into(),
            deployment: "hello".into(),
            revision: 2,
            module: ModuleRef {
                digest: Digest([0xab; 32]),
                size: 300,
            },
            args: vec!["-v".into()],
            env: vec![EnvVar {
                name: "A".into(),
                value: "b".into(),
            }],
            limits: Limits {
                memory_bytes: 16 << 20,
            },
            restart: RestartPolicy::OnFailure,
        }],
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn desired_state_bytes() {
    let bytes = encode(&sample_desired());
    assert_eq!(
        hex(&bytes),
        concat!(
            "01",
            "03",
            "01",               // version, generation, 1 workload
            "0768656c6c6f2d30", // name "hello-0"
            "0568656c6c6f",     // deployment "hello"
            "02",               // revision
            "abababababababababababababababababababababababababababababababab", // digest
            "ac02",             // size 300 (varint)
            "01022d76",         // args ["-v"]
            "0101410162",       // env [A=b]
            "80808008",         // memory 16 MiB (varint)
            "01",               // restart OnFailure
        )
    );
    assert_eq!(decode::<DesiredState>(&bytes).unwrap(), sample_desired());
}

#[test]
fn status_presence_blob_and_log_bytes() {
    let status = NodeStatus {
        observed_generation: 3,
        workloads: vec![WorkloadStatus {
            name: "w".into(),
            revision: 1,
            phase: Phase::Failed,
            restarts: 2,
            exit_code: Some(-1),
            message: "trap".into(),
        }],
    };
    assert_eq!(hex(&encode(&status)), "010301017701030201010474726170");

    assert_eq!(hex(&encode(&Presence::Offline)), "0101");
    let hello = Presence::Online(Hello {
        agent_version: "0.1.0".into(),
        device_class: DeviceClass::Linux,
        capacity: Capacity {
            memory_bytes: 1024,
            max_workloads: 8,
        },
        labels: vec![Label {
            key: "k".into(),
            value: "v".into(),
        }],
    });
    assert_eq!(hex(&encode(&hello)), "010005302e312e300080080801016b0176");

    let req = BlobRequest {
        node: "n".into(),
        digest: Digest([1; 32]),
        offset: 5,
        len: 7,
    };
    assert_eq!(hex(&encode(&req)), format!("01016e{}0507", "01".repeat(32)));
    let reply = BlobReply::NotFound {
        digest: Digest([2; 32]),
    };
    assert_eq!(hex(&encode(&reply)), format!("0101{}", "02".repeat(32)));

    let logs = LogBatch {
        lines: vec![LogLine {
            workload: "w".into(),
            stream: Stream::Stderr,
            ts_ms: 1,
            line: "hi".into(),
        }],
    };
    assert_eq!(hex(&encode(&logs)), "010101770101026869");
}

#[test]
fn heartbeat_sized_messages_stay_small() {
    // An offline presence is the Last Will of every node: it must stay tiny.
    assert!(encode(&Presence::Offline).len() <= 32);
}
