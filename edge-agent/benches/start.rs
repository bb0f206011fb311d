//! Start-up figures of the runtime, in-process (no MQTT): how long from "start this
//! workload" (the moment the agent acts on a desired state) until the guest is running,
//! observed as its first output line, for the `hello` guest run from the hub's artifact.
//!
//! - `first_start`: the artifact is loaded from its file (mapped, checked, linked) and
//!   instantiated: the first start of a module the node has just fetched.
//! - `cached_start`: the module is already loaded (`InstancePre`): every later start, such as
//!   a restart or a second replica.
//! - `idle_instance_bytes`: RSS added per idle instance (sleeping guests), averaged over 50.
//!
//! Run: `cargo bench -p edge-agent --bench start` after building the guest
//! (`scripts/bench.sh` does both). Prints one `figures:` line; compare runs as ratios.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_agent::runtime::{CodeKind, InstanceContext, Runtime, StopSignal};
use tokio::sync::mpsc;

mod support;
use support::{median, per_instance, rss_bytes};
use wasmfleet_proto::{Capabilities, Code, EnvVar, Limits, ModuleRef, RestartPolicy, WorkloadSpec};

const GUEST: &str = "target/guests/wasm32-wasip1/release/hello.wasm";

fn spec(name: &str, args: &[&str]) -> WorkloadSpec {
    let module = ModuleRef {
        digest: wasmfleet_proto::Digest([0; 32]),
        size: 0,
    };
    WorkloadSpec {
        name: name.into(),
        deployment: "hello".into(),
        revision: 1,
        module,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![EnvVar {
            name: "GREETING".into(),
            value: "hi".into(),
        }],
        limits: Limits {
            memory_bytes: 16 << 20,
            cpu_millis: None,
            max_run_ms: None,
        },
        restart: RestartPolicy::Never,
        code: Code::Precompiled(module),
        namespace: "default".into(),
        config: vec![],
        capabilities: Capabilities::default(),
    }
}

/// Starts one instance and returns how long until its first output line.
async fn time_to_first_line(rt: &Runtime, ctx: &InstanceContext, name: &str) -> Duration {
    let (tx, mut rx) = mpsc::channel(64);
    let started = Instant::now();
    let task = tokio::spawn(rt.run(spec(name, &["--count", "1"]), ctx.clone(), tx));
    rx.recv().await.expect("the guest printed nothing");
    let took = started.elapsed();
    let _ = task.await;
    took
}

/// A runtime with nothing loaded, and a context running `artifact` from a file of its own.
fn fresh(dir: &Path, tag: &str, artifact: &[u8]) -> (Runtime, InstanceContext) {
    let rt = Runtime::new(&dir.join(format!("cache-{tag}"))).unwrap();
    let code_path: PathBuf = dir.join(format!("hello-{tag}.cwasm"));
    std::fs::write(&code_path, artifact).unwrap();
    let ctx = InstanceContext {
        node: "bench".into(),
        code_path,
        code_digest: wasmfleet_common::digest::sha256(artifact),
        code: CodeKind::Precompiled,
        log_limits: Default::default(),
        stop: StopSignal::never(),
    };
    (rt, ctx)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::fs::read(root.join(GUEST)).unwrap_or_else(|e| {
        panic!("{GUEST}: {e}; build it first (scripts/bench.sh does)");
    });
    let profile = wasmfleet_common::engine::host_profile(false);
    let artifact = wasmfleet_common::engine::Compiler::new()
        .compile(&profile, &wasm)
        .expect("precompile hello");
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut first = Vec::new();
        let mut cached = Vec::new();
        for round in 0..20 {
            // A fresh runtime and artifact file each round: nothing loaded yet.
            let (rt, ctx) = fresh(dir.path(), &round.to_string(), &artifact);
            first.push(time_to_first_line(&rt, &ctx, "first").await);
            for i in 0..20 {
                cached.push(time_to_first_line(&rt, &ctx, &format!("w-{i}")).await);
            }
        }
        // Idle instances: guests asleep in a long interval.
        let (rt, ctx) = fresh(dir.path(), "idle", &artifact);
        let (tx, mut rx) = mpsc::channel(4096);
        let mut tasks = Vec::new();
        let first_one = tokio::spawn(rt.run(spec("idle-0", &["--interval", "3600s"]), ctx.clone(), tx.clone()));
        while let Some(l) = rx.recv().await {
            assert!(!l.line.contains("bad --"), "{}", l.line);
            if l.line.starts_with("hi from") {
                break;
            }
        }
        let before = rss_bytes();
        const IDLE: usize = 50;
        for i in 1..=IDLE {
            tasks.push(tokio::spawn(rt.run(
                spec(&format!("idle-{i}"), &["--interval", "3600s"]),
                ctx.clone(),
                tx.clone(),
            )));
        }
        let mut greeted = 0;
        while greeted < IDLE {
            if rx.recv().await.is_some_and(|l| l.line.starts_with("hi from")) {
                greeted += 1;
            }
        }
        let per_instance = per_instance(before, tasks);
        first_one.abort();
        println!(
            "figures: first_start_us={} cached_start_us={} idle_instance_bytes={} artifact_bytes={} module_bytes={}",
            median(first).as_micros(),
            median(cached).as_micros(),
            per_instance,
            artifact.len(),
            wasm.len()
        );
    });
}
