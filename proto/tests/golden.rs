//! Golden bytes: these pin the wire format. If one fails, the change breaks every deployed
//! agent and firmware: bump `WIRE_VERSION` and keep a decoder for the old one instead.

use wasmfleet_proto::*;

fn sample_desired() -> DesiredState {
    DesiredState {
        fleet: 0x1234,
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
                cpu_millis: Some(200),
                max_run_ms: None,
            },
            restart: RestartPolicy::OnFailure,
            code: Code::Precompiled(ModuleRef {
                digest: Digest([0xcd; 32]),
                size: 4096,
            }),
            namespace: "ns".into(),
            config: vec![ConfigEntry {
                key: "k".into(),
                value: "v".into(),
            }],
            capabilities: Capabilities {
                i2c: vec!["i2c-1".into()],
                spi: vec![],
                gpio: vec![17],
                publish: vec!["t/+".into()],
                subscribe: vec![],
                kv_bytes: 64,
            },
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
            "04",
            "b424", // version, fleet 0x1234 (varint)
            "03",
            "01",               // generation, 1 workload
            "0768656c6c6f2d30", // name "hello-0"
            "0568656c6c6f",     // deployment "hello"
            "02",               // revision
            "abababababababababababababababababababababababababababababababab", // digest
            "ac02",             // size 300 (varint)
            "01022d76",         // args ["-v"]
            "0101410162",       // env [A=b]
            "80808008",         // memory 16 MiB (varint)
            "01c801",           // cpu Some(200m)
            "00",               // max run time None
            "01",               // restart OnFailure
            "00",               // code Precompiled
            "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", // artifact digest
            "8020",             // artifact size 4096
            "026e73",           // namespace "ns"
            "01016b0176",       // config [k=v]
            "0105693263",       // capabilities: i2c ["i2c-1"] (continued)
            "2d31",             //
            "00",               // spi []
            "0111",             // gpio [17]
            "0103742f2b",       // publish ["t/+"]
            "00",               // subscribe []
            "40",               // kv bytes 64
        )
    );
    assert_eq!(decode::<DesiredState>(&bytes).unwrap(), sample_desired());
}

#[test]
fn status_presence_blob_and_log_bytes() {
    let status = NodeStatus {
        observed_fleet: 7,
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
    assert_eq!(hex(&encode(&status)), "04070301017701030201010474726170");

    assert_eq!(hex(&encode(&Presence::Offline)), "0401");
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
        engine: EngineProfile {
            target: "x86_64".into(),
            cpu_features: vec!["sse".into()],
            wasmtime: "50.0.1".into(),
            settings: 5,
            compiler: false,
        },
        devices: vec!["gpio:17".into()],
    });
    assert_eq!(
        hex(&encode(&hello)),
        concat!(
            "040005302e312e300080080801016b0176", // as in version 2
            "067838365f3634",                     // target "x86_64"
            "0103737365",                         // cpu features ["sse"]
            "0635302e302e31",                     // wasmtime "50.0.1"
            "05",                                 // settings fingerprint
            "00",                                 // no compiler
            "01076770696f3a3137",                 // devices ["gpio:17"]
        )
    );

    let req = BlobRequest {
        digest: Digest([1; 32]),
        offset: 5,
        len: 7,
    };
    assert_eq!(hex(&encode(&req)), format!("04{}0507", "01".repeat(32)));
    let reply = BlobReply::NotFound {
        digest: Digest([2; 32]),
    };
    assert_eq!(hex(&encode(&reply)), format!("0401{}", "02".repeat(32)));

    let logs = LogBatch {
        lines: vec![LogLine {
            workload: "w".into(),
            stream: Stream::Stderr,
            ts_ms: 1,
            line: "hi".into(),
        }],
    };
    assert_eq!(hex(&encode(&logs)), "040101770101026869");
    let marker = LogBatch {
        lines: vec![LogLine {
            workload: "w".into(),
            stream: Stream::Agent,
            ts_ms: 1,
            line: "".into(),
        }],
    };
    assert_eq!(hex(&encode(&marker)), "04010177020100");
}

#[test]
fn a_node_acts_only_on_newer_generations_of_its_fleet() {
    let state = |fleet, generation| DesiredState {
        fleet,
        generation,
        workloads: vec![],
    };
    let current = state(1, 5);
    assert!(state(1, 6).supersedes(&current));
    assert!(!state(1, 5).supersedes(&current), "a duplicate");
    assert!(
        !state(1, 4).supersedes(&current),
        "a stale retained message"
    );
    assert!(
        state(2, 1).supersedes(&current),
        "a rebuilt hub's new fleet"
    );
    assert!(
        state(1, 1).supersedes(&DesiredState::default()),
        "a fresh node"
    );
}

#[test]
fn heartbeat_sized_messages_stay_small() {
    // An offline presence is the Last Will of every node: it must stay tiny.
    assert!(encode(&Presence::Offline).len() <= 32);
    // The heartbeat: version byte, then the interval as a varint.
    let beat = Heartbeat { interval_ms: 5_000 };
    assert_eq!(hex(&encode(&beat)), "048827");
    assert_eq!(decode::<Heartbeat>(&encode(&beat)), Ok(beat));
    // On the wire, an MQTT 3.1.1 QoS 0 PUBLISH: fixed header (2), topic length (2), topic,
    // payload. A node named like `gw-00042` stays within 32 bytes.
    let topic = topic::node_topic("gw-00042", topic::NodeTopic::Heartbeat);
    let wire = 2 + 2 + topic.len() + encode(&beat).len();
    assert!(wire <= 32, "{wire} bytes on the wire");
}
