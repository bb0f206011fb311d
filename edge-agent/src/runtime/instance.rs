//! One running workload: a WASI preview1 command module in its own `Store`, with the spec's
//! arguments, environment and memory limit, and its output captured line by line.

use std::path::PathBuf;

use tokio::sync::mpsc;
use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::Runtime;
use super::output::{LineSink, SharedBudget};
use crate::logbudget::Limits;
use crate::reconcile::Exit;

/// Where an instance runs and where its module is.
#[derive(Debug, Clone)]
pub struct InstanceContext {
    /// Node name, passed to the guest as `WASMFLEET_NODE`.
    pub node: String,
    /// The verified module file in the blob store.
    pub wasm_path: PathBuf,
    /// How much output the instance may ship.
    pub log_limits: Limits,
}

/// Store data of one instance.
pub(super) struct Host {
    pub(super) wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// Runs the instance to its end; flushes a last unterminated output line afterwards.
pub(super) async fn run(
    rt: Runtime,
    spec: WorkloadSpec,
    ctx: InstanceContext,
    logs: mpsc::Sender<LogLine>,
) -> Exit {
    let budget = SharedBudget::new(ctx.log_limits);
    let stdout = LineSink::new(&spec.name, Stream::Stdout, logs.clone(), budget.clone());
    let stderr = LineSink::new(&spec.name, Stream::Stderr, logs, budget);
    let mut exit = execute(&rt, &spec, &ctx, &stdout, &stderr).await;
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

async fn execute(
    rt: &Runtime,
    spec: &WorkloadSpec,
    ctx: &InstanceContext,
    stdout: &LineSink,
    stderr: &LineSink,
) -> Exit {
    // Compiling is CPU-heavy and blocking: keep it off the async executor.
    let (rt2, digest, path) = (rt.clone(), spec.module.digest, ctx.wasm_path.clone());
    let compiled = tokio::task::spawn_blocking(move || {
        super::cache::load(rt2.engine(), &rt2.inner.cache_dir, &digest, &path)
    })
    .await;
    let module = match compiled {
        Ok(Ok((module, _))) => module,
        Ok(Err(e)) => return Exit::failure(None, e.to_string()),
        Err(e) => return Exit::failure(None, format!("compiling module {}: {e}", digest.short())),
    };
    // The hub ran the same check at upload; this covers modules that reached the node
    // another way (side-loaded, or stored by an older hub).
    if let Err(e) = wasmfleet_common::engine::check_module(rt.linker(), &module) {
        return Exit::failure(None, format!("module {}: {e}", digest.short()));
    }
    let mut store = Store::new(rt.engine(), host(spec, ctx, stdout, stderr));
    store.limiter(|h| &mut h.limits);
    // Yield to the executor at every epoch tick: a busy guest cannot block the agent's loop,
    // and dropping the future (stop) takes effect within one tick. This is not a CPU limit:
    // the guest is resumed right after yielding.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    let instance = match rt.linker().instantiate_async(&mut store, &module).await {
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
    let memory = usize::try_from(spec.limits.memory_bytes).unwrap_or(usize::MAX);
    let limits = StoreLimitsBuilder::new()
        .memory_size(memory)
        .instances(1)
        .build();
    Host {
        wasi: b.build_p1(),
        limits,
    }
}

/// `proc_exit(0)` is success, `proc_exit(n)` a failure with code n, a trap a failure with the
/// trap's message; anything else a failure with the error chain.
fn map_error(e: &wasmtime::Error, context: &str) -> Exit {
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return match code {
            0 => Exit::success(),
            n => Exit::failure(Some(*n), format!("exited with code {n}")),
        };
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
