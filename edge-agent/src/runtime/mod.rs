//! The WebAssembly runtime: the only module that imports wasmtime.
//!
//! One [`Runtime`] per process owns the shared `Engine` (no compiler unless the agent is built
//! with feature `compiler`; epoch interruption with a ticker thread that sleeps while nothing
//! runs), the WASI preview1 linker and a cache of ready-to-instantiate modules
//! (`InstancePre`), so starting a cached module is a fresh `Store` and an instantiation.
//! Engine settings and linker come from `wasmfleet_common::engine`, which the hub compiles and
//! checks modules with. Instances run as futures ([`Runtime::run`]) that the agent spawns as
//! tokio tasks; stopping an instance is dropping its future.
//!
//! Code: the hub's precompiled artifact for this node's engine profile, loaded with
//! `Module::deserialize_file`. Deserializing runs native code the artifact contains, so only
//! trusted artifacts may be loaded: the agent loads only blobs whose SHA-256 digest is named
//! in the desired state its hub sent (verified when the blob was stored). With feature
//! `compiler`, source modules are compiled here and cached in `cache/`.
//!
//! Limits: memory ([`memory`]) over all memories and tables; CPU ([`cpu`]) measured exactly
//! and throttled to `resources.cpu` at every [`EPOCH_TICK`]; `maxRunTime` as a deadline.

#[cfg(feature = "compiler")]
mod cache;
pub mod cpu;
mod events;
mod host;
mod instance;
pub mod memory;
mod output;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmfleet_common::engine::{self, ModuleKind};
use wasmfleet_proto::{Capabilities, Digest, LogLine, WorkloadSpec};
use wasmtime::{Engine, InstancePre, Linker, Module};

#[cfg(feature = "compiler")]
pub use cache::CacheOutcome;
pub use host::Services;
pub use instance::{InstanceContext, STOP_GRACE, StopSignal};

use wasmfleet_node::reconcile::Exit;

/// How often the epoch advances: a running guest yields (and is throttled) at least this
/// often. While no instance runs, the ticker sleeps.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Whether this agent can compile source modules (built with feature `compiler`).
pub const HAS_COMPILER: bool = cfg!(feature = "compiler");

/// What a code blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A precompiled artifact the hub made for this node's engine profile.
    Precompiled,
    /// A source module (`.wasm`), compiled here (feature `compiler`).
    Source,
}

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

/// A module ready to instantiate with one set of grants, and its kind.
type Ready = (InstancePre<instance::Host>, ModuleKind);

struct Inner {
    engine: Engine,
    /// One linker per set of granted capabilities: it holds only their host functions.
    linkers: Mutex<HashMap<host::Grants, Linker<instance::Host>>>,
    services: Services,
    cache_dir: PathBuf,
    /// Modules ready to instantiate, by code blob path (the path names the digest) and grants.
    ready: Mutex<HashMap<(PathBuf, host::Grants), Ready>>,
    running: Arc<AtomicUsize>,
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
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Counts a running instance while alive; wakes the epoch ticker.
pub(crate) struct RunningGuard(Arc<AtomicUsize>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Creates the engine and a cache in `cache_dir` (created if missing), with no devices, key-
    /// value stores beside the cache (`../kv`) and an application bus that publishes nowhere.
    pub fn new(cache_dir: &Path) -> Result<Runtime, RuntimeError> {
        let kv_dir = cache_dir.parent().unwrap_or(cache_dir).join("kv");
        Runtime::with_services(
            cache_dir,
            Services {
                devices: crate::devices::Devices::none(),
                kv: crate::kv::KvStores::new(&kv_dir),
                apps: crate::apps::AppBus::default(),
            },
        )
    }

    /// Creates the engine and a cache in `cache_dir`, with the host API reaching `services`.
    pub fn with_services(cache_dir: &Path, services: Services) -> Result<Runtime, RuntimeError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| RuntimeError::CacheDir {
            path: cache_dir.to_path_buf(),
            source,
        })?;
        let setup = |e: engine::AdmitError| RuntimeError::Setup(e.to_string());
        let engine = engine::engine().map_err(setup)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let (engine, stop, running) = (engine.weak(), stop_ticker.clone(), running.clone());
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if running.load(Ordering::Relaxed) == 0 {
                            // Idle: no wake-ups until an instance starts (it unparks us).
                            std::thread::park_timeout(Duration::from_secs(1));
                            continue;
                        }
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
            linkers: Mutex::new(HashMap::new()),
            services,
            cache_dir: cache_dir.to_path_buf(),
            ready: Mutex::new(HashMap::new()),
            running,
            stop_ticker,
            ticker: Some(ticker),
        };
        Ok(Runtime {
            inner: Arc::new(inner),
        })
    }

    /// Compiles the source module at `wasm_path` (or loads it from the cache) without running
    /// it, and says which happened. Blocking: call from `spawn_blocking` in async code.
    #[cfg(feature = "compiler")]
    pub fn prepare(&self, digest: &Digest, wasm_path: &Path) -> Result<CacheOutcome, RuntimeError> {
        cache::load(&self.inner.engine, &self.inner.cache_dir, digest, wasm_path)
            .map(|(_, outcome)| outcome)
    }

    /// Deletes compiled artifacts whose module is no longer held, and those compiled by
    /// another engine build or configuration (they can never load again); forgets loaded
    /// modules whose blob is gone.
    pub fn prune_cache(&self, held: &[Digest]) -> std::io::Result<usize> {
        #[cfg(feature = "compiler")]
        let keep: std::collections::HashSet<PathBuf> =
            held.iter().map(|d| self.cache_path(d)).collect();
        // Without a compiler nothing here can be used (a previous build's leftovers).
        #[cfg(not(feature = "compiler"))]
        let keep = {
            let _ = held;
            std::collections::HashSet::<PathBuf>::new()
        };
        self.ready().retain(|(path, _), _| path.exists());
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

    /// Path of the locally compiled artifact of source module `digest` for this engine.
    #[cfg(feature = "compiler")]
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

    fn ready(&self) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, host::Grants), Ready>> {
        self.inner.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the host API of this runtime's instances reaches.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// The linker of `grants`, built on first use.
    fn linker(&self, grants: host::Grants) -> Result<Linker<instance::Host>, String> {
        let mut linkers = self.inner.linkers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = linkers.get(&grants) {
            return Ok(l.clone());
        }
        let l = host::linker(&self.inner.engine, grants)?;
        linkers.insert(grants, l.clone());
        Ok(l)
    }

    /// The module of `ctx`'s code, ready to instantiate with the host functions `caps` grants:
    /// from memory, else loaded (an artifact: mapped from its file, fast) or compiled (a source
    /// module, off the executor). A module importing a host function that `caps` does not
    /// grant is refused, naming the manifest field that would.
    async fn instance_pre(
        &self,
        ctx: &InstanceContext,
        caps: &Capabilities,
    ) -> Result<Ready, String> {
        let grants = host::Grants::of(caps);
        let key = (ctx.code_path.clone(), grants);
        if let Some(ready) = self.ready().get(&key) {
            return Ok(ready.clone());
        }
        let module = match ctx.code {
            CodeKind::Precompiled => self.load_artifact(&ctx.code_path)?,
            CodeKind::Source => {
                self.compile_source(&ctx.code_digest, &ctx.code_path)
                    .await?
            }
        };
        // The hub ran the same checks at upload and apply; this covers code that reached the
        // node another way (side-loaded, an older hub).
        let imports = module.imports().map(|i| (i.module(), i.name()));
        wasmfleet_common::abi::check_imports(imports, caps).map_err(|e| e.to_string())?;
        // `check_module`'s two steps, linking once: the linked module is what runs.
        let pre = self
            .linker(grants)?
            .instantiate_pre(&module)
            .map_err(|e| engine::AdmitError::Imports(format!("{e:#}")).to_string())?;
        let kind = engine::module_kind(&module).map_err(|e| e.to_string())?;
        self.ready().insert(key, (pre.clone(), kind));
        Ok((pre, kind))
    }

    fn load_artifact(&self, path: &Path) -> Result<Module, String> {
        // SAFETY: deserializing trusts the artifact to contain code wasmtime produced. This
        // blob's SHA-256 digest was named in the desired state from this node's hub (which
        // compiled it) and verified when the blob was stored; nothing else writes the blob
        // store. wasmtime still checks its version, target and settings before loading.
        unsafe { Module::deserialize_file(&self.inner.engine, path) }.map_err(|e| {
            format!(
                "cannot load the precompiled artifact {}: {e:#}",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })
    }

    #[cfg(feature = "compiler")]
    async fn compile_source(&self, digest: &Digest, path: &Path) -> Result<Module, String> {
        let digest = *digest;
        let (engine, dir, path) = (
            self.inner.engine.clone(),
            self.inner.cache_dir.clone(),
            path.to_path_buf(),
        );
        // Compiling is CPU-heavy and blocking: keep it off the executor.
        tokio::task::spawn_blocking(move || cache::load(&engine, &dir, &digest, &path))
            .await
            .map_err(|e| format!("compiling module {}: {e}", digest.short()))?
            .map(|(module, _)| module)
            .map_err(|e| e.to_string())
    }

    #[cfg(not(feature = "compiler"))]
    async fn compile_source(&self, digest: &Digest, _: &Path) -> Result<Module, String> {
        Err(format!(
            "module {} is source code and this agent has no compiler (build edge-agent with feature `compiler`)",
            digest.short()
        ))
    }

    pub(crate) fn running_guard(&self) -> RunningGuard {
        self.inner.running.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &self.inner.ticker {
            t.thread().unpark();
        }
        RunningGuard(self.inner.running.clone())
    }

    fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}
