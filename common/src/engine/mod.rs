//! The WebAssembly contract between hub and agents: one wasmtime configuration, one
//! admission rule, and the engine profiles that say which precompiled artifacts a node loads.
//!
//! Agents run modules with [`config`]; the hub compiles them for agents with the same
//! settings and a target ([`compiler`], feature `compiler`), once per [`profile`], and checks
//! every upload with the agents' own WASI linker, so a module the hub stores can be
//! instantiated on every agent, and one it refuses is refused at `apply` time with the reason
//! an agent would have given.

#[cfg(feature = "compiler")]
pub mod compiler;
pub mod profile;

use wasmtime::{Config, Engine, ExternType, Linker, Module};
use wasmtime_wasi::p1::WasiP1Ctx;

#[cfg(feature = "compiler")]
pub use compiler::{Checker, Compiler};
pub use profile::{WASMTIME_VERSION, describe, host_profile, settings_fingerprint};

/// Why a module is not accepted. Messages say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// Not WebAssembly at all.
    #[error("not a valid WebAssembly module: missing the \\0asm magic header")]
    NotWasm,
    /// A component (or another binary version) rather than a core module.
    #[error(
        "not a valid WebAssembly module: this is a component or an unsupported binary version; a core module (WASI preview 1) is required"
    )]
    NotCoreModule,
    /// The engine refused to compile it (invalid, or uses a feature agents do not enable).
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// It imports something agents do not provide.
    #[error("module imports what agents do not provide: {0}")]
    Imports(String),
    /// Neither an event module (`on_start`) nor a WASI command (`_start`).
    #[error("module is not runnable: {0}")]
    NotCommand(String),
    /// The engine could not be set up (a build problem, not the module's fault).
    #[error("wasmtime setup failed: {0}")]
    Setup(String),
}

/// The engine settings that are compiled into artifacts: changing one changes
/// [`settings_fingerprint`], so hubs and agents of different settings fall back to compiling
/// on the node instead of loading artifacts that would be refused.
pub mod settings {
    /// Address space reserved per linear memory. Small devices and 32-bit gateways cannot
    /// reserve wasmtime's default 4 GiB per instance; 64 MiB covers the default workload
    /// limit, and a memory growing past it is moved (rare, and bounded by its limit).
    pub const MEMORY_RESERVATION: u64 = 64 << 20;
    /// Guard region after each memory (explicit bounds checks do the rest).
    pub const MEMORY_GUARD: u64 = 64 << 10;
    /// Extra room reserved when a memory is moved, so growth does not move it every time.
    pub const MEMORY_GROWTH_RESERVATION: u64 = 1 << 20;
    /// The description [`super::settings_fingerprint`] hashes.
    pub const DESCRIPTION: &str = "v1 epoch_interruption memory_reservation=67108864 memory_guard_size=65536 memory_reservation_for_growth=1048576";
}

/// Deepest wasm call stack (not part of artifacts): a guest recursing deeper traps.
pub const MAX_WASM_STACK: usize = 256 << 10;
/// Host stack of each running instance (async fibers): the wasm stack plus room for host
/// calls. Allocated per instance, so it is a large part of an idle instance's cost.
pub const ASYNC_STACK: usize = MAX_WASM_STACK + (64 << 10);

/// The engine configuration every agent runs modules with. The hub compiles with this plus a
/// target ([`compiler::config_for`]).
pub fn config() -> Config {
    let mut config = Config::new();
    // Agents interrupt guests on epoch ticks to yield and throttle; it is part of the code.
    config.epoch_interruption(true);
    config.memory_reservation(settings::MEMORY_RESERVATION);
    config.memory_guard_size(settings::MEMORY_GUARD);
    config.memory_reservation_for_growth(settings::MEMORY_GROWTH_RESERVATION);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config
}

/// An engine with [`config`].
pub fn engine() -> Result<Engine, AdmitError> {
    Engine::new(&config()).map_err(|e| AdmitError::Setup(format!("{e:#}")))
}

/// A linker with WASI preview 1 (the functions agents give every module), reaching the WASI
/// context of a store's data through `wasi`.
pub fn wasi_linker<T: Send + 'static>(
    engine: &Engine,
    wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Copy + Send + Sync + 'static,
) -> Result<Linker<T>, AdmitError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, wasi)
        .map_err(|e| AdmitError::Setup(format!("{e:#}")))?;
    Ok(linker)
}

/// The cheap first look: a core WebAssembly module by its header.
pub fn check_header(bytes: &[u8]) -> Result<(), AdmitError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(AdmitError::NotWasm);
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(AdmitError::NotCoreModule);
    }
    Ok(())
}

/// What kind of program a module is, by its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A WASI preview 1 command: `_start` runs it to the end.
    Command,
    /// An event-driven module of the host API (`modules/ABI.md`): `on_start`, then handlers.
    Event,
}

/// Whether `linker` can instantiate `module`, and which kind of program it is: an event
/// module (exports `on_start: () -> ()` and `memory`) or a WASI command (`_start: () -> ()`).
pub fn check_module<T: 'static>(
    linker: &Linker<T>,
    module: &Module,
) -> Result<ModuleKind, AdmitError> {
    linker
        .instantiate_pre(module)
        .map_err(|e| AdmitError::Imports(format!("{e:#}")))?;
    module_kind(module)
}

/// The kind of program `module` is, by its exports (see [`check_module`]).
pub fn module_kind(module: &Module) -> Result<ModuleKind, AdmitError> {
    let nullary = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => Ok(true),
        Some(other) => Err(AdmitError::NotCommand(format!(
            "its `{name}` export is {other:?}, not a function taking and returning nothing"
        ))),
        None => Ok(false),
    };
    if nullary(crate::abi::START_EXPORT)? {
        return match module.get_export("memory") {
            Some(ExternType::Memory(_)) => Ok(ModuleKind::Event),
            _ => Err(AdmitError::NotCommand(
                "it exports `on_start` but no memory named `memory`, which host calls read and write".into(),
            )),
        };
    }
    match nullary("_start")? {
        true => Ok(ModuleKind::Command),
        false => Err(AdmitError::NotCommand(
            "it exports neither `on_start` (a Wasmfleet module, see modules/ABI.md) nor `_start` (a WASI command, e.g. a `main` program for wasm32-wasip1)".into(),
        )),
    }
}

/// Defines every host API function ([`crate::abi::FUNCTIONS`]) in `linker` by signature only
/// (calling one traps). For checking modules where no instance runs: `instantiate_pre` then
/// checks names and types exactly as an agent's linker would.
pub fn add_abi_signatures<T: 'static>(linker: &mut Linker<T>) -> Result<(), AdmitError> {
    use crate::abi::{FUNCTIONS, IMPORT_MODULE, Val};
    use wasmtime::{FuncType, ValType};
    let ty = |v: &Val| match v {
        Val::I32 => ValType::I32,
        Val::I64 => ValType::I64,
    };
    for f in FUNCTIONS {
        let sig = FuncType::new(
            linker.engine(),
            f.params.iter().map(ty),
            f.results.iter().map(ty),
        );
        linker
            .func_new(IMPORT_MODULE, f.name, sig, |_, _, _| {
                Err(wasmtime::Error::msg("host API signature stub called"))
            })
            .map_err(|e| AdmitError::Setup(format!("{e:#}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprinted_description_names_the_settings_in_use() {
        let d = settings::DESCRIPTION;
        assert!(d.contains(&format!(
            "memory_reservation={}",
            settings::MEMORY_RESERVATION
        )));
        assert!(d.contains(&format!("memory_guard_size={}", settings::MEMORY_GUARD)));
        assert!(d.contains(&format!(
            "memory_reservation_for_growth={}",
            settings::MEMORY_GROWTH_RESERVATION
        )));
        engine().unwrap();
    }
}
