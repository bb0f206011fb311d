//! The runtime against the real `hello` guest, run from the artifact a hub would ship:
//! arguments, environment, output, exits, traps, memory and CPU limits, deadlines, stopping,
//! corrupt artifacts, and (feature `compiler`) the local compiled-code cache.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(feature = "compiler")]
use edge_agent::runtime::CacheOutcome;
use edge_agent::runtime::{CodeKind, InstanceContext, Runtime, StopSignal};
use tokio::sync::mpsc;
use wasmfleet_node::reconcile::Exit;
use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};

use crate::common::*;

struct Setup {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    /// Runs the precompiled artifact.
    ctx: InstanceContext,
    module: wasmfleet_proto::ModuleRef,
    wasm_path: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello_bytes();
    let wasm_path = dir.path().join("hello.wasm");
    std::fs::write(&wasm_path, &bytes).unwrap();
    let artifact = precompiled_hello();
    let code_path = dir.path().join("hello.cwasm");
    std::fs::write(&code_path, &artifact).unwrap();
    let runtime = Runtime::new(&dir.path().join("cache")).unwrap();
    let ctx = InstanceContext {
        node: "node-a".into(),
        code_path,
        code_digest: module_ref(&artifact).digest,
        code: CodeKind::Precompiled,
        log_limits: Default::default(),
        stop: StopSignal::never(),
    };
    Setup {
        _dir: dir,
        runtime,
        ctx,
        module: module_ref(&bytes),
        wasm_path,
    }
}

/// The hub's artifact of `hello` for this host (compiled once per test process).
fn precompiled_hello() -> Vec<u8> {
    static ART: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ART.get_or_init(|| precompile(&hello_bytes())).clone()
}

/// Runs the source module instead (compiled here: feature `compiler`).
#[cfg(feature = "compiler")]
fn source_ctx(s: &Setup) -> InstanceContext {
    InstanceContext {
        code_path: s.wasm_path.clone(),
        code_digest: s.module.digest,
        code: CodeKind::Source,
        ..s.ctx.clone()
    }
}

/// Runs to the end (bounded by a generous timeout) and collects the output lines.
async fn run(s: &Setup, spec: WorkloadSpec) -> (Exit, Vec<LogLine>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let exit = tokio::time::timeout(
        Duration::from_secs(60),
        s.runtime.run(spec, s.ctx.clone(), tx),
    )
    .await
    .expect("instance did not finish");
    let lines = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    (exit, lines)
}

fn stdout(lines: &[LogLine]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.line.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_env_and_stdout_lines_reach_the_agent() {
    let s = setup();
    let spec = spec("hello-0", s.module, &["--count", "2", "--interval", "10ms"]);
    let (exit, lines) = run(&s, spec).await;
    assert_eq!(exit, Exit::success());
    assert_eq!(
        stdout(&lines),
        [
            "hi from hello-0 on node-a #1",
            "hi from hello-0 on node-a #2"
        ]
    );
    let stderr: Vec<_> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stderr)
        .collect();
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(lines.iter().all(|l| l.workload == "hello-0" && l.ts_ms > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonzero_exit_code_fails() {
    let s = setup();
    let (exit, _) = run(
        &s,
        spec("w", s.module, &["--count", "1", "--exit-code", "3"]),
    )
    .await;
    assert_eq!(exit.code, Some(3));
    assert!(!exit.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_fails_with_trap_message() {
    let s = setup();
    let (exit, lines) = run(&s, spec("w", s.module, &["--trap"])).await;
    assert_eq!(exit.code, None);
    assert!(
        exit.message.starts_with("wasm trap: ")
            && !exit.message.contains("wasm trap: wasm trap")
            && exit.message.contains("unreachable")
            && exit.message.contains("last stderr: ")
            && exit.message.contains("--trap asked for a trap"),
        "{}",
        exit.message
    );
    assert!(
        lines
            .iter()
            .any(|l| l.line.contains("--trap asked for a trap")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_enforced() {
    let s = setup();
    let mut spec = spec("w", s.module, &["--alloc", "64Mi", "--count", "1"]);
    spec.limits.memory_bytes = 16 << 20;
    let (exit, lines) = run(&s, spec.clone()).await;
    assert!(!exit.is_success(), "{exit:?}");
    assert!(exit.message.starts_with("OOMKilled: "), "{}", exit.message);
    assert!(
        stdout(&lines).is_empty(),
        "must not get past the allocation: {lines:?}"
    );
    // The same guest within its limit succeeds: the failure was the limit.
    spec.limits.memory_bytes = 128 << 20;
    assert_eq!(run(&s, spec).await.0, Exit::success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_prompt_even_while_the_guest_sleeps() {
    let s = setup();
    let (tx, mut rx) = mpsc::channel(1024);
    let spec = spec("sleeper", s.module, &["--interval", "3600s"]);
    let task = tokio::spawn(s.runtime.run(spec, s.ctx.clone(), tx));
    // Wait for the first line: the guest is now inside its hour-long sleep.
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if line.stream == Stream::Stdout {
            break;
        }
    }
    task.abort();
    let res = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stop took too long");
    assert!(res.unwrap_err().is_cancelled());
}

fn garbage() -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_artifact_fails_clearly() {
    let s = setup();
    std::fs::write(&s.ctx.code_path, garbage()).unwrap();
    let (exit, _) = run(&s, spec("w", s.module, &[])).await;
    assert_eq!(exit.code, None);
    assert!(
        exit.message
            .contains("cannot load the precompiled artifact hello.cwasm"),
        "{}",
        exit.message
    );
}

/// Without a compiler, a source module is refused with the reason (the agent's admission
/// normally keeps it from getting this far; this is the runtime's own guard).
#[cfg(not(feature = "compiler"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_compiler_source_modules_are_refused() {
    let s = setup();
    let ctx = InstanceContext {
        code_path: s.wasm_path.clone(),
        code_digest: s.module.digest,
        code: CodeKind::Source,
        ..s.ctx.clone()
    };
    let (tx, _rx) = mpsc::channel(16);
    let exit = s.runtime.run(spec("w", s.module, &[]), ctx, tx).await;
    assert!(
        exit.message.contains("this agent has no compiler"),
        "{}",
        exit.message
    );
}

#[cfg(feature = "compiler")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_source_module_fails_clearly() {
    let s = setup();
    let garbage = garbage();
    std::fs::write(&s.wasm_path, &garbage).unwrap();
    let ctx = InstanceContext {
        code_digest: module_ref(&garbage).digest,
        ..source_ctx(&s)
    };
    let (tx, _rx) = mpsc::channel(16);
    let exit = s
        .runtime
        .run(spec("w", module_ref(&garbage), &[]), ctx, tx)
        .await;
    assert_eq!(exit.code, None);
    assert!(
        exit.message.contains("invalid WebAssembly module"),
        "{}",
        exit.message
    );
    assert!(
        exit.message.contains(&module_ref(&garbage).digest.to_hex()),
        "names the digest: {}",
        exit.message
    );
}

#[cfg(feature = "compiler")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_module_is_cached_and_reused() {
    let s = setup();
    let digest = s.module.digest;
    let cwasm = s.runtime.cache_path(&digest);
    assert!(!cwasm.exists());
    assert_eq!(
        s.runtime.prepare(&digest, &s.wasm_path).unwrap(),
        CacheOutcome::Compiled
    );
    assert!(cwasm.is_file());
    assert!(
        cwasm
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&digest.to_hex())
    );
    let written = std::fs::metadata(&cwasm).unwrap().modified().unwrap();
    // A fresh runtime (as after an agent restart) loads the artifact instead of compiling.
    let again = Runtime::new(cwasm.parent().unwrap()).unwrap();
    assert_eq!(
        again.prepare(&digest, &s.wasm_path).unwrap(),
        CacheOutcome::Hit
    );
    assert_eq!(
        std::fs::metadata(&cwasm).unwrap().modified().unwrap(),
        written
    );
    let (tx, _rx) = mpsc::channel(16);
    let exit = s
        .runtime
        .run(spec("w", s.module, &["--count", "1"]), source_ctx(&s), tx)
        .await;
    assert_eq!(exit, Exit::success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_instance_does_not_affect_another() {
    let s = setup();
    let (tx, mut rx) = mpsc::channel(1024);
    let good = tokio::spawn(s.runtime.run(
        spec("good", s.module, &["--count", "3", "--interval", "50ms"]),
        s.ctx.clone(),
        tx.clone(),
    ));
    let bad = s
        .runtime
        .run(spec("bad", s.module, &["--trap"]), s.ctx.clone(), tx)
        .await;
    assert!(!bad.is_success());
    let good = tokio::time::timeout(Duration::from_secs(60), good)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good, Exit::success());
    let lines: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|l| l.workload == "good" && l.stream == Stream::Stdout)
        .collect();
    assert_eq!(lines.len(), 3);
}

/// A cache that cannot be written (a full disk, here a file where the directory was) must not
/// stop the workload: it runs from memory.
#[cfg(feature = "compiler")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_cache_still_runs_the_module() {
    let s = setup();
    let cache = s
        .runtime
        .cache_path(&s.module.digest)
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::write(&cache, b"not a directory").unwrap();
    assert_eq!(
        s.runtime.prepare(&s.module.digest, &s.wasm_path).unwrap(),
        CacheOutcome::Uncached
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let w = spec("w", s.module, &["--count", "1", "--interval", "1ms"]);
    let exit = s.runtime.run(w, source_ctx(&s), tx).await;
    let lines: Vec<LogLine> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(exit.is_success(), "{}", exit.message);
    assert!(
        lines
            .iter()
            .any(|l| l.line.contains("hi from w on node-a #1")),
        "{lines:?}"
    );
}

/// Artifacts of modules no longer held, or of another engine build, are removed; the
/// artifact of a held module stays.
#[cfg(feature = "compiler")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_prune_keeps_only_held_modules_of_this_engine() {
    let s = setup();
    let digest = s.module.digest;
    s.runtime.prepare(&digest, &s.wasm_path).unwrap();
    let cwasm = s.runtime.cache_path(&digest);
    let stale = cwasm.with_file_name(format!("{}-0000000000000000.cwasm", digest.to_hex()));
    std::fs::write(&stale, b"from an older agent build").unwrap();
    assert_eq!(s.runtime.prune_cache(&[digest]).unwrap(), 1);
    assert!(cwasm.is_file() && !stale.exists());
    assert_eq!(s.runtime.prune_cache(&[]).unwrap(), 1);
    assert!(!cwasm.exists());
}

/// A guest in a busy loop (no CPU limit) yields at every epoch tick: on the agent's
/// single-threaded executor a neighbour keeps its timing (ten lines 20 ms apart take about
/// 0.2 s, not seconds) and the spinner can be stopped.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_loop_neither_starves_a_neighbour_nor_resists_a_stop() {
    let s = setup();
    let (tx, mut rx) = mpsc::channel(1024);
    let spinner = tokio::spawn(s.runtime.run(
        spec("spinner", s.module, &["--spin"]),
        s.ctx.clone(),
        tx.clone(),
    ));
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the spinner never started")
            .unwrap();
        if line.line.ends_with("spinning") {
            break;
        }
    }
    let good = s.runtime.run(
        spec("good", s.module, &["--count", "10", "--interval", "20ms"]),
        s.ctx.clone(),
        tx,
    );
    let started = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(60), good)
        .await
        .expect("the neighbour was starved");
    assert_eq!(exit, Exit::success());
    // Each 20 ms sleep may end up to one epoch tick (10 ms) late: 0.3 s at worst, plus the
    // instantiation. Generous for a loaded CI machine, far below starvation.
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "neighbour took {took:?}"
    );
    spinner.abort();
    let res = tokio::time::timeout(Duration::from_secs(10), spinner)
        .await
        .expect("the spinner could not be stopped");
    assert!(res.unwrap_err().is_cancelled());
}

/// CPU time this thread has used (the current-thread runtime runs every instance on it).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec, and a clock id the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A busy loop limited to `cpu: 200m` is throttled to about a fifth of the core, measured
/// as the CPU time of the thread that runs it; without the limit it takes all of it.
#[tokio::test(flavor = "current_thread")]
async fn cpu_limit_throttles_a_busy_loop() {
    let s = setup();
    let measure = |millis: Option<u32>| {
        let s = &s;
        async move {
            let (tx, _rx) = mpsc::channel(1024);
            let mut w = spec("spinner", s.module, &["--spin"]);
            w.limits.cpu_millis = millis;
            let task = s.runtime.run(w, s.ctx.clone(), tx);
            let (cpu0, wall0) = (thread_cpu(), Instant::now());
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            (thread_cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64()
        }
    };
    let limited = measure(Some(200)).await;
    let free = measure(None).await;
    assert!(limited < 0.35, "200m used {limited:.2} of a core");
    // Other tests (and builds) share the machine's two cores, so neither figure is absolute:
    // what the limit must do is hold the spinner well below what it takes when free.
    assert!(
        free > 2.0 * limited,
        "unlimited used {free:.2} of a core, 200m {limited:.2}"
    );
}

/// `maxRunTime` stops a run that lasts too long, as a terminal failure naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_run_time_stops_a_long_run_for_good() {
    let s = setup();
    let mut w = spec("w", s.module, &["--spin"]);
    w.limits.max_run_ms = Some(300);
    let started = Instant::now();
    let (exit, _) = run(&s, w).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(exit.terminal && !exit.is_success(), "{exit:?}");
    assert!(
        exit.message.contains("DeadlineExceeded") && exit.message.contains("maxRunTime of 300ms"),
        "{}",
        exit.message
    );
}

/// Runs a WAT command module (precompiled like the hub would) under `memory_bytes`.
async fn run_wat(s: &Setup, text: &str, memory_bytes: u64) -> Exit {
    let artifact = precompile(&wat::parse_str(text).unwrap());
    let path = s
        .ctx
        .code_path
        .with_file_name(format!("{}.cwasm", module_ref(&artifact).digest));
    std::fs::write(&path, &artifact).unwrap();
    let ctx = InstanceContext {
        code_path: path,
        code_digest: module_ref(&artifact).digest,
        ..s.ctx.clone()
    };
    let mut w = spec("hog", s.module, &[]);
    w.limits.memory_bytes = memory_bytes;
    let (tx, _rx) = mpsc::channel(16);
    tokio::time::timeout(Duration::from_secs(60), s.runtime.run(w, ctx, tx))
        .await
        .unwrap()
}

/// `resources.memory` caps all memories and tables together: two memories that each fit, a
/// table that grows past the rest, and a memory that grows past it are all stopped with a
/// reason that says memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_covers_every_memory_and_table() {
    let s = setup();
    // Two memories of 10 pages (640 KiB) each: each fits 1 MiB alone, not together.
    let two = r#"(module (memory 10) (memory 10) (func (export "_start")))"#;
    let exit = run_wat(&s, two, 1 << 20).await;
    assert!(
        exit.message.starts_with("OOMKilled: memory limit exceeded"),
        "{}",
        exit.message
    );
    assert_eq!(
        run_wat(&s, two, 2 << 20).await,
        Exit::success(),
        "fits in 2 MiB"
    );

    // A table grown to a million entries (8 MiB) inside a 4 MiB limit.
    let table = r#"(module (table 1 funcref)
        (func (export "_start")
          (drop (table.grow 0 (ref.null func) (i32.const 1000000)))))"#;
    let exit = run_wat(&s, table, 4 << 20).await;
    assert!(exit.message.contains("growing a table"), "{}", exit.message);
    assert!(
        exit.message.contains("over its limit of 4Mi"),
        "{}",
        exit.message
    );

    // The second memory grows past what the first leaves.
    let grow = r#"(module (memory 1) (memory $b 1)
        (func (export "_start") (drop (memory.grow $b (i32.const 40)))))"#;
    let exit = run_wat(&s, grow, 2 << 20).await;
    assert!(
        exit.message.contains("growing a linear memory"),
        "{}",
        exit.message
    );
}
