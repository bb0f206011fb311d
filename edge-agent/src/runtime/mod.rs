//! The WebAssembly runtime: the only module that imports wasmtime.
//!
//! One [`Runtime`] per process owns the shared `Engine` (Cranelift, epoch interruption with a
//! ticker thread), the WASI preview1 linker and the compiled-code cache. Engine configuration
//! and linker come from `wasmfleet_common::engine`, which the hub checks uploads with, so a
//! module the hub accepted is one this runtime can instantiate. Instances run as futures
//! ([`Runtime::run`]) that the agent spawns as tokio tasks; stopping an instance is dropping
//! its future.
//!
//! CPU: every [`EPOCH_TICK`] a running guest yields to the executor, so a busy loop cannot
//! block the agent's loop or keep an instance from being stopped. It is not a CPU limit: a
//! guest that never sleeps still takes its share of a core (limits per workload are planned).

mod cache;
mod instance;
mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmfleet_common::engine;
use wasmfleet_proto::{Digest, LogLine, WorkloadSpec};
use wasmtime::{Engine, Linker};

pub use cache::CacheOutcome;
pub use instance::InstanceContext;

use crate::reconcile::Exit;

/// How often the epoch advances. With a deadline of one tick, a CPU-bound guest yields to the
/// executor at least this often (it is then resumed: yielding is not throttling).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why the runtime could not be set up or a module not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine or linker could not be configured.
    #[error("wasmtime setup failed: {0}")]
    Setup(String),
    /// The cache directory is unusable.
    #[error("compiled-code cache {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The module is not valid WebAssembly (or could not be read).
    #[error("module {digest}: {message}")]
    Module {
        /// Which module.
        digest: Digest,
        /// What went wrong.
        message: String,
    },
}

/// Per-process wasmtime state. Cheap to clone; the epoch ticker stops with the last clone.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<instance::Host>,
    cache_dir: PathBuf,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Runtime {
    /// Creates the engine and a cache in `cache_dir` (created if missing).
    pub fn new(cache_dir: &Path) -> Result<Runtime, RuntimeError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| RuntimeError::CacheDir {
            path: cache_dir.to_path_buf(),
            source,
        })?;
        let setup = |e: engine::AdmitError| RuntimeError::Setup(e.to_string());
        let engine = engine::engine().map_err(setup)?;
        let linker =
            engine::wasi_linker(&engine, |h: &mut instance::Host| &mut h.wasi).map_err(setup)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop) = (engine.weak(), stop_ticker.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| RuntimeError::Setup(format!("epoch ticker thread: {e}")))?
        };
        let inner = Inner {
            engine,
            linker,
            cache_dir: cache_dir.to_path_buf(),
            stop_ticker,
            ticker: Some(ticker),
        };
        Ok(Runtime {
            inner: Arc::new(inner),
        })
    }

    /// Compiles the module at `wasm_path` (or loads it from the cache) without running it, and
    /// says which happened. Blocking: call from `spawn_blocking` in async code.
    pub fn prepare(&self, digest: &Digest, wasm_path: &Path) -> Result<CacheOutcome, RuntimeError> {
        cache::load(&self.inner.engine, &self.inner.cache_dir, digest, wasm_path)
            .map(|(_, outcome)| outcome)
    }

    /// Deletes compiled artifacts whose module is no longer held, and those compiled by
    /// another engine build or configuration (they can never load again).
    pub fn prune_cache(&self, held: &[Digest]) -> std::io::Result<usize> {
        let keep: std::collections::HashSet<PathBuf> =
            held.iter().map(|d| self.cache_path(d)).collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.inner.cache_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "cwasm") && !keep.contains(&path) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Path of the cached compiled artifact of `digest` for this engine.
    pub fn cache_path(&self, digest: &Digest) -> PathBuf {
        cache::artifact_path(&self.inner.engine, &self.inner.cache_dir, digest)
    }

    /// Runs one instance of `spec` to completion and says how it ended. Output lines go to
    /// `logs`. Dropping the future stops the instance at once, even mid-`sleep`.
    pub fn run(
        &self,
        spec: WorkloadSpec,
        ctx: InstanceContext,
        logs: mpsc::Sender<LogLine>,
    ) -> impl std::future::Future<Output = Exit> + Send + 'static {
        instance::run(self.clone(), spec, ctx, logs)
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn linker(&self) -> &Linker<instance::Host> {
        &self.inner.linker
    }
}
