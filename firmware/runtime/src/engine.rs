//! The firmware's wasmtime engine and loading of host-precompiled artifacts.
//!
//! The hub compiles every module for microcontrollers with exactly the settings of
//! [`wasmfleet_proto::engine::MCU_SETTINGS`]; [`config`] is the device side of that contract.
//! wasmtime checks an artifact's settings when it loads it, so a drift between the two shows
//! up as a [`LoadError`], never as wrong execution.

use alloc::string::{String, ToString};
use core::fmt;
use core::ptr::NonNull;

use sha2::{Digest as _, Sha256};
use wasmfleet_proto::Digest;
use wasmtime::{Config, Engine, Module};

/// The Pulley stack of each store, allocated on the heap. It bounds wasm recursion; it does
/// not enter the artifact's compatibility check, so a device may change it alone.
pub const MAX_WASM_STACK: usize = 16 << 10;

/// The Pulley target of hosted builds (tests, simulators), where wasmtime would otherwise pick
/// the native backend. Pulley's pointer width must match the host's, so a 64-bit host runs
/// `pulley64` artifacts; a device runs `pulley32` ([`wasmfleet_proto::engine::PULLEY32`]),
/// which wasmtime selects by itself on targets without a Cranelift backend.
#[cfg(all(not(target_os = "none"), target_pointer_width = "64"))]
pub const HOSTED_TARGET: &str = "pulley64";
/// See the 64-bit variant.
#[cfg(all(not(target_os = "none"), target_pointer_width = "32"))]
pub const HOSTED_TARGET: &str = "pulley32";

/// The wasmtime configuration of [`wasmfleet_proto::engine::MCU_SETTINGS`]: no virtual memory
/// (no reservation, no guard pages, no copy-on-write images, explicit bounds checks instead
/// of signals), no GC or async, custom page sizes, and fuel instead of epochs (epochs need
/// 64-bit atomics these cores lack).
pub fn config() -> Config {
    let mut c = Config::new();
    // A fixed, valid triple: this cannot fail for wasmtime 50 (a test loads an artifact
    // through it). Should it ever, loading reports the target mismatch.
    #[cfg(not(target_os = "none"))]
    let _ = c.target(HOSTED_TARGET);
    c.consume_fuel(true)
        .gc_support(false)
        .memory_init_cow(false)
        .concurrency_support(false)
        .signals_based_traps(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .wasm_custom_page_sizes(true)
        .max_wasm_stack(MAX_WASM_STACK);
    c
}

/// Why the engine could not be created or an artifact not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// wasmtime refused the configuration.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// The artifact's SHA-256 is not the digest the hub named.
    #[error("artifact digest mismatch: expected {expected}, got {actual}")]
    Digest {
        /// Named by the desired state.
        expected: Digest,
        /// Of the bytes at hand.
        actual: Digest,
    },
    /// wasmtime refused the artifact: another wasmtime version, other engine settings (see
    /// [`wasmfleet_proto::engine::MCU_SETTINGS_FINGERPRINT`]), another Pulley target, or not
    /// an artifact at all.
    #[error("cannot load artifact: {0}")]
    Artifact(String),
}

/// The engine all instances of the node share. Creating it costs a few KiB of heap; keep one.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// An engine with [`config`].
    pub fn new() -> Result<Runtime, LoadError> {
        Engine::new(&config())
            .map(|engine| Runtime { engine })
            .map_err(|e| LoadError::Engine(e.to_string()))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Loads an artifact that stays where it is (flash): the module's code is read in place, so
/// only its metadata takes RAM.
///
/// # Safety
///
/// `artifact` must be the unmodified output of `Engine::precompile_module` (the hub's, for
/// this node's settings), and must not change while the returned module or any instance of it
/// lives: do not erase or rewrite that flash region (an update writes another slot). wasmtime
/// only lightly validates artifacts; arbitrary bytes could make it execute arbitrary code.
pub unsafe fn load_static(rt: &Runtime, artifact: &'static [u8]) -> Result<Module, LoadError> {
    // SAFETY: the caller guarantees a genuine artifact that outlives the module unchanged;
    // `'static` and the contract above cover the lifetime, and wasmtime only reads it.
    unsafe { Module::deserialize_raw(&rt.engine, NonNull::from(artifact)) }
        .map_err(|e| LoadError::Artifact(e.to_string()))
}

/// Loads an artifact by copying it into RAM, after checking that its SHA-256 is `digest`.
///
/// Safe because of that check: the node trusts exactly the artifacts its hub names by digest
/// in the desired state (as the Linux agent does), and the hub names only the output of its
/// own `Engine::precompile_module`.
pub fn load(rt: &Runtime, artifact: &[u8], digest: &Digest) -> Result<Module, LoadError> {
    let actual = Digest(Sha256::digest(artifact).into());
    if actual != *digest {
        return Err(LoadError::Digest {
            expected: *digest,
            actual,
        });
    }
    // SAFETY: the bytes are the artifact the hub named (digest checked above), which is the
    // output of `precompile_module`; wasmtime copies them, so they may change afterwards.
    unsafe { Module::deserialize(&rt.engine, artifact) }
        .map_err(|e| LoadError::Artifact(e.to_string()))
}
