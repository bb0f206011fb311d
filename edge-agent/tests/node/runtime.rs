//! The runtime against the real `hello` guest: arguments, environment, output, exits, traps,
//! memory limits, stopping, corrupt modules and the compiled-code cache.

use std::time::Duration;

use edge_agent::reconcile::Exit;
use edge_agent::runtime::{CacheOutcome, InstanceContext, Runtime};
use tokio::sync::mpsc;
use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};

use crate::common::*;

struct Setup {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    ctx: InstanceContext,
    module: wasmfleet_proto::ModuleRef,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello_bytes();
    let wasm_path = dir.path().join("hello.wasm");
    std::fs::write(&wasm_path, &bytes).unwrap();
    let runtime = Runtime::new(&dir.path().join("cache")).unwrap();
    let ctx = InstanceContext {
        node: "node-a".into(),
        wasm_path,
        log_limits: Default::default(),
    };
    Setup {
        _dir: dir,
        runtime,
        ctx,
        module: module_ref(&bytes),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_module_fails_clearly() {
    let s = setup();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&s.ctx.wasm_path, &garbage).unwrap();
    let (exit, _) = run(&s, spec("w", module_ref(&garbage), &[])).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_module_is_cached_and_reused() {
    let s = setup();
    let digest = s.module.digest;
    let cwasm = s.runtime.cache_path(&digest);
    assert!(!cwasm.exists());
    assert_eq!(
        s.runtime.prepare(&digest, &s.ctx.wasm_path).unwrap(),
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
        again.prepare(&digest, &s.ctx.wasm_path).unwrap(),
        CacheOutcome::Hit
    );
    assert_eq!(
        std::fs::metadata(&cwasm).unwrap().modified().unwrap(),
        written
    );
    let (exit, _) = run(&s, spec("w", s.module, &["--count", "1"])).await;
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
        s.runtime
            .prepare(&s.module.digest, &s.ctx.wasm_path)
            .unwrap(),
        CacheOutcome::Uncached
    );
    let (exit, lines) = run(
        &s,
        spec("w", s.module, &["--count", "1", "--interval", "1ms"]),
    )
    .await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_prune_keeps_only_held_modules_of_this_engine() {
    let s = setup();
    let digest = s.module.digest;
    s.runtime.prepare(&digest, &s.ctx.wasm_path).unwrap();
    let cwasm = s.runtime.cache_path(&digest);
    let stale = cwasm.with_file_name(format!("{}-0000000000000000.cwasm", digest.to_hex()));
    std::fs::write(&stale, b"from an older agent build").unwrap();
    assert_eq!(s.runtime.prune_cache(&[digest]).unwrap(), 1);
    assert!(cwasm.is_file() && !stale.exists());
    assert_eq!(s.runtime.prune_cache(&[]).unwrap(), 1);
    assert!(!cwasm.exists());
}

/// A guest in a busy loop yields at every epoch tick: even on a single-threaded executor, a
/// neighbour keeps running and the spinner can be stopped. (This is not a CPU limit: the
/// spinner gets its share of the core.)
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
        spec("good", s.module, &["--count", "3", "--interval", "20ms"]),
        s.ctx.clone(),
        tx,
    );
    let exit = tokio::time::timeout(Duration::from_secs(60), good)
        .await
        .expect("the neighbour was starved");
    assert_eq!(exit, Exit::success());
    spinner.abort();
    let res = tokio::time::timeout(Duration::from_secs(10), spinner)
        .await
        .expect("the spinner could not be stopped");
    assert!(res.unwrap_err().is_cancelled());
}
