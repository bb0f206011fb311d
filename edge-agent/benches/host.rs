//! Host API figures, in-process: what a host call costs a module, how fast a cached event
//! module starts, and what an idle one costs in memory.
//!
//! - `host_call_ns`: one `clock_monotonic_ns` call, less the same loop calling a wasm function;
//!   `metered_host_call_ns`: the same for a module with a CPU limit (`resources.cpu`), whose
//!   CPU time is measured at every transition into and out of the host.
//! - `config_get_ns`: one `config_get` copying a short value into guest memory.
//! - `i2c_read_ns`: one `i2c_transaction` (write the register, read one byte) to the simulated
//!   BME280: argument checks, the copy in and out, the hand-off to the blocking pool and back,
//!   the device's lock.
//! - `cached_instantiate_us`: run an event module whose `on_start` returns at once, from a
//!   loaded `InstancePre`: store, instance, `on_start`, teardown (median of 500).
//! - `idle_event_instance_bytes`: RSS added per event module waiting on a timer, over 200.
//!
//! Run: `cargo bench -p edge-agent --bench host` (`scripts/bench.sh` does). Prints one
//! `figures:` line; compare runs as ratios.

use std::time::{Duration, Instant};

use edge_agent::apps::AppBus;
use edge_agent::devices::sim;
use edge_agent::kv::KvStores;
use edge_agent::runtime::{CodeKind, InstanceContext, Runtime, Services, StopSignal};
use tokio::sync::mpsc;
use wasmfleet_node::reconcile::Exit;

mod support;
use support::{median, per_instance, rss_bytes};
use wasmfleet_proto::{
    Capabilities, Code, ConfigEntry, Limits, ModuleRef, RestartPolicy, WorkloadSpec,
};

/// Calls per loop.
const CALLS: i32 = 2_000_000;

fn spec(name: &str, artifact: &[u8], caps: Capabilities) -> WorkloadSpec {
    let module = ModuleRef {
        digest: wasmfleet_common::digest::sha256(artifact),
        size: artifact.len() as u64,
    };
    WorkloadSpec {
        name: name.into(),
        deployment: "bench".into(),
        revision: 1,
        module,
        args: vec![],
        env: vec![],
        limits: Limits {
            memory_bytes: 1 << 20,
            cpu_millis: None,
            max_run_ms: None,
        },
        restart: RestartPolicy::Never,
        code: Code::Precompiled(module),
        namespace: "default".into(),
        config: vec![ConfigEntry {
            key: "k".into(),
            value: "hi".into(),
        }],
        capabilities: caps,
    }
}

struct Module {
    ctx: InstanceContext,
    artifact: Vec<u8>,
}

fn module(dir: &std::path::Path, name: &str, wat: &str) -> Module {
    let wasm = wat::parse_str(wat).unwrap();
    let profile = wasmfleet_common::engine::host_profile(false);
    let artifact = wasmfleet_common::engine::Compiler::new()
        .compile(&profile, &wasm)
        .expect("precompile");
    let code_path = dir.join(format!("{name}.cwasm"));
    std::fs::write(&code_path, &artifact).unwrap();
    let ctx = InstanceContext {
        node: "bench".into(),
        code_path,
        code_digest: wasmfleet_common::digest::sha256(&artifact),
        code: CodeKind::Precompiled,
        log_limits: Default::default(),
        stop: StopSignal::never(),
    };
    Module { ctx, artifact }
}

/// A module whose `on_start` runs `body` CALLS times.
fn looping(body: &str) -> String {
    format!(
        r#"(module
  (import "wasmfleet_v1" "clock_monotonic_ns" (func $clock (result i64)))
  (import "wasmfleet_v1" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet_v1" "i2c_open" (func $i2c_open (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "i2c_transaction" (func $i2c_tx (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "k")
  (data (i32.const 8) "i2c-1")
  (data (i32.const 96) "\d0")
  (data (i32.const 128) "\01\00\00\00\60\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 148) "\00\00\00\00\64\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
  (global $g (mut i64) (i64.const 0))
  (func $local (result i64) (global.set $g (i64.add (global.get $g) (i64.const 1))) (global.get $g))
  (func (export "on_start") (local $i i32) (local $bus i32)
    (local.set $bus (call $i2c_open (i32.const 8) (i32.const 5)))
    (loop $l
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_s (local.get $i) (i32.const {CALLS})))))
)"#
    )
}

async fn run_once(rt: &Runtime, m: &Module, name: &str, caps: Capabilities) -> (Exit, Duration) {
    run_spec(rt, m, spec(name, &m.artifact, caps)).await
}

async fn run_spec(rt: &Runtime, m: &Module, w: WorkloadSpec) -> (Exit, Duration) {
    let (tx, _rx) = mpsc::channel(64);
    let started = Instant::now();
    let exit = rt.run(w, m.ctx.clone(), tx).await;
    (exit, started.elapsed())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let services = Services {
        devices: sim::devices(),
        kv: KvStores::new(&dir.path().join("kv")),
        apps: AppBus::default(),
    };
    let rt = Runtime::with_services(&dir.path().join("cache"), services).unwrap();
    let i2c = Capabilities {
        i2c: vec!["i2c-1".into()],
        ..Capabilities::default()
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let per_call = |t: Duration, base: Duration| {
            t.saturating_sub(base).as_nanos() as f64 / f64::from(CALLS)
        };
        let cases = [
            ("base", "(drop (call $local))"),
            ("clock", "(drop (call $clock))"),
            (
                "config",
                "(drop (call $config_get (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 16)))",
            ),
            (
                "i2c",
                "(drop (call $i2c_tx (local.get $bus) (i32.const 0x76) (i32.const 128) (i32.const 2)))",
            ),
        ];
        let mut best = Vec::new();
        for (name, body) in cases {
            let m = module(dir.path(), name, &looping(body));
            // Best of 5: the figure is the cost, not the machine's noise.
            let mut runs = Vec::new();
            for _ in 0..5 {
                let (exit, took) = run_once(&rt, &m, name, i2c.clone()).await;
                assert!(exit.is_success(), "{name}: {exit:?}");
                runs.push(took);
            }
            best.push(runs.into_iter().min().unwrap());
        }
        let (base, clock, config, i2c_t) = (best[0], best[1], best[2], best[3]);
        // The same two loops with a CPU limit of a whole core: measured, never throttled.
        let mut metered = Vec::new();
        for (name, body) in &cases[..2] {
            let m = module(dir.path(), name, &looping(body));
            let mut w = spec(name, &m.artifact, i2c.clone());
            w.limits.cpu_millis = Some(1000);
            let mut runs = Vec::new();
            for _ in 0..5 {
                let (exit, took) = run_spec(&rt, &m, w.clone()).await;
                assert!(exit.is_success(), "{name}: {exit:?}");
                runs.push(took);
            }
            metered.push(runs.into_iter().min().unwrap());
        }

        let empty = module(
            dir.path(),
            "empty",
            r#"(module (memory (export "memory") 1) (func (export "on_start")))"#,
        );
        let mut starts = Vec::new();
        for i in 0..550 {
            let (exit, took) = run_once(&rt, &empty, "empty", Capabilities::default()).await;
            assert!(exit.is_success(), "{exit:?}");
            if i >= 50 {
                starts.push(took); // the first ones load and link the module
            }
        }

        let idle = module(
            dir.path(),
            "idle",
            r#"(module
  (import "wasmfleet_v1" "timer_start" (func $t (param i64 i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "on_start") (drop (call $t (i64.const 3600000) (i64.const 3600000)))))"#,
        );
        let (tx, _rx) = mpsc::channel(64);
        let warm = tokio::spawn(rt.run(
            spec("idle-0", &idle.artifact, Capabilities::default()),
            idle.ctx.clone(),
            tx.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_bytes();
        const IDLE: usize = 200;
        let mut tasks = Vec::new();
        for i in 1..=IDLE {
            tasks.push(tokio::spawn(rt.run(
                spec(&format!("idle-{i}"), &idle.artifact, Capabilities::default()),
                idle.ctx.clone(),
                tx.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_instance = per_instance(before, tasks);
        warm.abort();

        println!(
            "figures: host_call_ns={:.1} metered_host_call_ns={:.1} config_get_ns={:.1} i2c_read_ns={:.1} wasm_call_ns={:.2} cached_instantiate_us={:.1} idle_event_instance_bytes={per_instance}",
            per_call(clock, base),
            per_call(metered[1], metered[0]),
            per_call(config, base),
            per_call(i2c_t, base),
            base.as_nanos() as f64 / f64::from(CALLS),
            median(starts).as_secs_f64() * 1e6,
        );
    });
}
