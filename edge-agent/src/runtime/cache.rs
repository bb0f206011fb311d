//! Cache of modules this agent compiled itself (feature `compiler`, source modules only):
//! `DIR/cache/<hex>-<engine hash>.cwasm`, so a restarted agent does not recompile them. The
//! engine hash in the name keeps artifacts of another wasmtime build or config from ever being
//! loaded. Artifacts the hub precompiled are loaded straight from the blob store.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmfleet_proto::Digest;
use wasmtime::{Engine, Module};

use super::RuntimeError;

/// Whether a module was compiled or came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from an existing `.cwasm`.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now, but the cache could not be written (disk full?): runs from memory and
    /// compiles again next time.
    Uncached,
}

/// Cache file of `digest` for `engine`.
pub(super) fn artifact_path(engine: &Engine, dir: &Path, digest: &Digest) -> PathBuf {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{}-{:016x}.cwasm", digest.to_hex(), h.finish()))
}

/// Loads the compiled module for `digest`, compiling `wasm_path` on a miss. A cache file that
/// fails to load is deleted and rebuilt.
pub(super) fn load(
    engine: &Engine,
    dir: &Path,
    digest: &Digest,
    wasm_path: &Path,
) -> Result<(Module, CacheOutcome), RuntimeError> {
    let cwasm = artifact_path(engine, dir, digest);
    if cwasm.is_file() {
        // SAFETY: the file was written by `Engine::precompile_module` of an engine with the
        // same compatibility hash (it is in the name), into the agent's own data directory,
        // via an atomic rename; nothing else writes there.
        match unsafe { Module::deserialize_file(engine, &cwasm) } {
            Ok(m) => return Ok((m, CacheOutcome::Hit)),
            Err(e) => {
                tracing::warn!(path = %cwasm.display(), error = %format!("{e:#}"), "unusable cached module; recompiling");
                let _ = std::fs::remove_file(&cwasm);
            }
        }
    }
    let err = |message: String| RuntimeError::Module {
        digest: *digest,
        message,
    };
    let wasm = std::fs::read(wasm_path)
        .map_err(|e| err(format!("cannot read {}: {e}", wasm_path.display())))?;
    let compiled = engine
        .precompile_module(&wasm)
        .map_err(|e| err(format!("invalid WebAssembly module: {e:#}")))?;
    if let Err(e) = wasmfleet_common::fsutil::write_atomic(&cwasm, &compiled) {
        // A full disk must not stop workloads: run from memory, recompile next time.
        tracing::warn!(path = %cwasm.display(), error = %e, "cannot cache compiled module; running it uncached");
        // SAFETY: the bytes come from `precompile_module` of this very engine, just now.
        let module =
            unsafe { Module::deserialize(engine, &compiled) }.map_err(|e| err(format!("{e:#}")))?;
        return Ok((module, CacheOutcome::Uncached));
    }
    // SAFETY: as above; we just wrote this file from `precompile_module` of this engine.
    let module =
        unsafe { Module::deserialize_file(engine, &cwasm) }.map_err(|e| err(format!("{e:#}")))?;
    Ok((module, CacheOutcome::Compiled))
}
