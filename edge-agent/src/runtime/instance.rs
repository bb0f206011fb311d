//! One running workload: a WASI preview1 command module in its own `Store`, with the spec's
//! arguments, environment, memory and CPU limits and longest run, and its output captured
//! line by line.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::cpu::Meter;
use super::memory::{MemoryBudget, MemoryExceeded};
use super::output::{LineSink, SharedBudget};
use super::{CodeKind, Runtime};
use crate::logbudget::Limits;
use crate::reconcile::Exit;

/// Where an instance runs and which code it runs.
#[derive(Debug, Clone)]
pub struct InstanceContext {
    /// Node name, passed to the guest as `WASMFLEET_NODE`.
    pub node: String,
    /// The verified code blob in the blob store (artifact or source module).
    pub code_path: PathBuf,
    /// Its digest.
    pub code_digest: wasmfleet_proto::Digest,
    /// What that blob is.
    pub code: CodeKind,
    /// How much output the instance may ship.
    pub log_limits: Limits,
}

/// Store data of one instance.
pub(super) struct Host {
    pub(super) wasi: WasiP1Ctx,
    memory: MemoryBudget,
    cpu: Meter,
}

/// Runs the instance to its end (or its `max_run_ms`); flushes a last unterminated output line
/// afterwards.
pub(super) async fn run(
    rt: Runtime,
    spec: WorkloadSpec,
    ctx: InstanceContext,
    logs: mpsc::Sender<LogLine>,
) -> Exit {
    let _running = rt.running_guard();
    let budget = SharedBudget::new(ctx.log_limits);
    let stdout = LineSink::new(&spec.name, Stream::Stdout, logs.clone(), budget.clone());
    let stderr = LineSink::new(&spec.name, Stream::Stderr, logs, budget);
    let execution = execute(&rt, &spec, &ctx, &stdout, &stderr);
    let mut exit = match spec.limits.max_run_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), execution).await {
            Ok(exit) => exit,
            Err(_) => Exit::deadline(format!(
                "DeadlineExceeded: stopped after running longer than its maxRunTime of {}",
                human(Duration::from_millis(ms))
            )),
        },
        None => execution.await,
    };
    stdout.flush_partial();
    stderr.flush_partial();
    // A trap says where, not why; the guest usually said why on stderr just before.
    if exit.message.starts_with("wasm trap")
        && let Some(tail) = stderr.tail()
    {
        exit.message = format!("{}; last stderr: {tail}", exit.message);
    }
    exit
}

fn human(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 1000 != 0 => format!("{ms}ms"),
        ms => format!("{}s", ms / 1000),
    }
}

async fn execute(
    rt: &Runtime,
    spec: &WorkloadSpec,
    ctx: &InstanceContext,
    stdout: &LineSink,
    stderr: &LineSink,
) -> Exit {
    let pre = match rt.instance_pre(ctx).await {
        Ok(pre) => pre,
        Err(e) => return Exit::failure(None, e.to_string()),
    };
    let mut store = Store::new(rt.engine(), host(spec, ctx, stdout, stderr));
    store.limiter(|h| &mut h.memory);
    // Exact CPU time: the clock runs only while the guest executes wasm.
    store.call_hook(|mut s, hook| {
        let cpu = &mut s.data_mut().cpu;
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.enter(),
            CallHook::CallingHost | CallHook::ReturningFromWasm => cpu.leave(),
        }
        Ok(())
    });
    // At every epoch tick the guest yields to the executor (a busy loop cannot hold up the
    // agent or a neighbour, and dropping the future stops it within a tick), and pauses for
    // as long as it is over its CPU share.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut s| {
        let (_, resume) = s.data_mut().cpu.tick();
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(resume)))
    });
    let instance = match pre.instantiate_async(&mut store).await {
        Ok(i) => i,
        Err(e) => return map_error(&e, "cannot instantiate module"),
    };
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(f) => f,
        Err(e) => return Exit::failure(None, format!("module is not a WASI command: {e:#}")),
    };
    match start.call_async(&mut store, ()).await {
        Ok(()) => Exit::success(),
        Err(e) => map_error(&e, "failed"),
    }
}

/// WASI context and limits from the spec: argv = [deployment, args...], the spec's env plus
/// the `WASMFLEET_*` variables, captured stdio, no filesystem or network access.
fn host(spec: &WorkloadSpec, ctx: &InstanceContext, stdout: &LineSink, stderr: &LineSink) -> Host {
    let mut b = WasiCtxBuilder::new();
    b.arg(&spec.deployment).args(&spec.args);
    for var in &spec.env {
        b.env(&var.name, &var.value);
    }
    b.env("WASMFLEET_NODE", &ctx.node)
        .env("WASMFLEET_WORKLOAD", &spec.name)
        .env("WASMFLEET_DEPLOYMENT", &spec.deployment)
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    Host {
        wasi: b.build_p1(),
        memory: MemoryBudget::new(spec.limits.memory_bytes),
        cpu: Meter::new(spec.limits.cpu_millis),
    }
}

/// `proc_exit(0)` is success, `proc_exit(n)` a failure with code n, the memory limit
/// `OOMKilled`, a trap a failure with the trap's message; anything else a failure with the
/// error chain.
fn map_error(e: &wasmtime::Error, context: &str) -> Exit {
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return match code {
            0 => Exit::success(),
            n => Exit::failure(Some(*n), format!("exited with code {n}")),
        };
    }
    if let Some(oom) = e.downcast_ref::<MemoryExceeded>() {
        return Exit::failure(None, format!("OOMKilled: {oom}"));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let text = trap.to_string();
        return Exit::failure(
            None,
            match text.starts_with("wasm trap") {
                true => text,
                false => format!("wasm trap: {text}"),
            },
        );
    }
    Exit::failure(None, format!("{context}: {e:#}"))
}
