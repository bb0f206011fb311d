//! Encode and decode of the frames every node and the hub handle: a desired state of 1 and of
//! 16 workloads, a node status, a heartbeat, a presence (`Online(Hello)`) and a full 32 KiB
//! blob chunk, with throughput in frame bytes.
//!
//! Why: the hub encodes a desired state for every node a change touches and decodes every
//! status, heartbeat and blob request of the fleet, and a microcontroller decodes on a core
//! of a few dozen MHz; a codec regression multiplies by the fleet size (or the chip's
//! slowness), so it should show here first.
//!
//! Run: `cargo bench -p wasmfleet-proto --bench codec` (`-- --quick` for a short run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmfleet_proto::*;

/// A replica as the hub sends it: precompiled code, a few args, env, config, capabilities.
fn workload(i: usize) -> WorkloadSpec {
    WorkloadSpec {
        name: format!("sensor-reader-{i}"),
        deployment: "sensor-reader".into(),
        revision: 3,
        module: ModuleRef {
            digest: Digest([0xab; 32]),
            size: 48_213,
        },
        args: vec!["--interval".into(), "5s".into()],
        env: vec![EnvVar {
            name: "RUST_LOG".into(),
            value: "info".into(),
        }],
        limits: Limits {
            memory_bytes: 16 << 20,
            cpu_millis: Some(200),
            max_run_ms: None,
        },
        restart: RestartPolicy::Always,
        code: Code::Precompiled(ModuleRef {
            digest: Digest([0xcd; 32]),
            size: 131_072,
        }),
        namespace: "default".into(),
        config: vec![ConfigEntry {
            key: "threshold".into(),
            value: "42".into(),
        }],
        capabilities: Capabilities {
            i2c: vec!["i2c-1".into()],
            publish: vec!["readings/+".into()],
            ..Capabilities::default()
        },
    }
}

fn desired(workloads: usize) -> DesiredState {
    DesiredState {
        fleet: 0x5eed_f1ee_7000_0001,
        generation: 1_234,
        workloads: (0..workloads).map(workload).collect(),
    }
}

fn status(workloads: usize) -> NodeStatus {
    NodeStatus {
        observed_fleet: 0x5eed_f1ee_7000_0001,
        observed_generation: 1_234,
        workloads: (0..workloads)
            .map(|i| WorkloadStatus {
                name: format!("sensor-reader-{i}"),
                revision: 3,
                phase: Phase::Running,
                restarts: 0,
                exit_code: None,
                message: String::new(),
            })
            .collect(),
    }
}

fn presence() -> Presence {
    Presence::Online(Hello {
        agent_version: "0.1.0".into(),
        device_class: DeviceClass::Linux,
        capacity: Capacity {
            memory_bytes: 1 << 30,
            max_workloads: 32,
        },
        labels: vec![Label {
            key: "site".into(),
            value: "plant-7".into(),
        }],
        engine: EngineProfile {
            target: "aarch64-unknown-linux-gnu".into(),
            cpu_features: vec!["has_lse".into(), "has_fp16".into()],
            wasmtime: "50.0.1".into(),
            settings: 0x1234_5678_9abc_def0,
            compiler: false,
        },
        devices: vec!["i2c-1".into(), "gpio:17".into()],
    })
}

fn blob_chunk() -> BlobReply {
    BlobReply::Chunk {
        digest: Digest([0xcd; 32]),
        offset: 3 * u64::from(MAX_BLOB_CHUNK),
        total: 1 << 20,
        data: (0..MAX_BLOB_CHUNK).map(|i| i as u8).collect(),
    }
}

/// Benchmarks encoding `msg` and decoding its frame, as group `name`, per frame byte.
fn both<M: Message + PartialEq + std::fmt::Debug>(c: &mut Criterion, name: &str, msg: M) {
    let frame = encode(&msg);
    assert_eq!(decode::<M>(&frame).as_ref(), Ok(&msg), "{name} round-trips");
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&msg))));
    group.bench_function("decode", |b| b.iter(|| decode::<M>(black_box(&frame))));
    group.finish();
}

fn codec(c: &mut Criterion) {
    both(c, "desired_1", desired(1));
    both(c, "desired_16", desired(16));
    both(c, "status_16", status(16));
    both(c, "heartbeat", Heartbeat { interval_ms: 5_000 });
    both(c, "presence_online", presence());
    both(c, "blob_chunk_32k", blob_chunk());
}

criterion_group! {
    name = benches;
    // Every case runs in nanoseconds to microseconds: short windows are precise enough.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = codec
}
criterion_main!(benches);
