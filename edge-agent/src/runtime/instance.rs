//! One running workload in its own `Store`, with the spec's memory and CPU limits and longest
//! run, and its output captured line by line. Two kinds of module run here: a WASI preview 1
//! command (`_start` runs to the end) and an event-driven host API module (`on_start`, then one
//! handler call per timer, message or GPIO edge, see `modules/ABI.md`).

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::cpu::Meter;
use super::host::Api;
use super::memory::{MemoryBudget, MemoryExceeded};
use super::output::{LineSink, SharedBudget};
use super::{CodeKind, Runtime};
use crate::logbudget::Limits;
use wasmfleet_common::engine::ModuleKind;
use wasmfleet_node::reconcile::Exit;

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
    /// Asks the instance to stop gracefully (an event module's `on_stop` runs first).
    pub stop: StopSignal,
}

/// How long an event module's `on_stop` may run.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// A graceful-stop request for one instance. Dropping the future stops at once instead.
#[derive(Debug, Clone)]
pub struct StopSignal(tokio::sync::watch::Receiver<bool>);

impl StopSignal {
    /// A signal and the sender that raises it.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, StopSignal) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, StopSignal(rx))
    }

    /// A signal that is never raised.
    pub fn never() -> StopSignal {
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(tx); // a closed channel would read as "raised" by `wait`
        StopSignal(rx)
    }

    pub(super) async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await; // sender gone without asking: run on
        }
    }
}

/// Store data of one instance.
pub(super) struct Host {
    pub(super) wasi: WasiP1Ctx,
    memory: MemoryBudget,
    cpu: Meter,
    pub(super) api: Api,
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
    let (pre, kind) = match rt.instance_pre(ctx, &spec.capabilities).await {
        Ok(ready) => ready,
        Err(e) => return Exit::failure(None, e.to_string()),
    };
    let (api, queues) = match Api::new(
        spec,
        &ctx.node,
        rt.services(),
        stdout.clone(),
        stderr.clone(),
    ) {
        Ok(a) => a,
        Err(e) => return Exit::failure(None, e),
    };
    let mut store = Store::new(rt.engine(), host(spec, ctx, stdout, stderr, api));
    store.limiter(|h| &mut h.memory);
    // Exact CPU time for a guest with a CPU limit: the clock runs only while it executes
    // wasm. The hooks read the clock at every host call (most of a host call's cost), so a
    // guest without a limit, which only ever yields, goes without them.
    if spec.limits.cpu_millis.is_some() {
        store.call_hook(|mut s, hook| {
            let cpu = &mut s.data_mut().cpu;
            match hook {
                CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.enter(),
                CallHook::CallingHost | CallHook::ReturningFromWasm => cpu.leave(),
            }
            Ok(())
        });
    }
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
    match kind {
        ModuleKind::Command => {
            let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(f) => f,
                Err(e) => {
                    return Exit::failure(None, format!("module is not a WASI command: {e:#}"));
                }
            };
            let mut stop = ctx.stop.clone();
            tokio::select! {
                done = start.call_async(&mut store, ()) => match done {
                    Ok(()) => Exit::success(),
                    Err(e) => map_error(&e, "failed"),
                },
                () = stop.wait() => Exit::success(),
            }
        }
        ModuleKind::Event => {
            super::events::run(&mut store, &instance, queues, ctx.stop.clone()).await
        }
    }
}

/// WASI context and limits from the spec: argv = [deployment, args...], the spec's env plus
/// the `WASMFLEET_*` variables, captured stdio, no filesystem or network access.
fn host(
    spec: &WorkloadSpec,
    ctx: &InstanceContext,
    stdout: &LineSink,
    stderr: &LineSink,
    api: Api,
) -> Host {
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
        api,
    }
}

/// `proc_exit(0)` is success, `proc_exit(n)` a failure with code n, the memory limit
/// `OOMKilled`, a trap a failure with the trap's message; anything else a failure with the
/// error chain.
pub(super) fn map_error(e: &wasmtime::Error, context: &str) -> Exit {
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
