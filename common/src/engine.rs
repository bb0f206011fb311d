//! The WebAssembly contract between hub and agents: one wasmtime configuration and one
//! admission rule.
//!
//! The hub checks every uploaded module with [`Checker`], built from the same [`config`] and
//! the same WASI preview 1 linker the agent runs modules with, so hub and agents accept
//! exactly the same modules: a module the hub stores can be instantiated on every Linux agent
//! of this build, and one it refuses is refused with the reason an agent would have given,
//! at `apply` time instead of on a thousand devices.

use wasmtime::{Config, Engine, ExternType, Linker, Module};
use wasmtime_wasi::p1::WasiP1Ctx;

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
    /// No `_start` export of type `() -> ()`.
    #[error("module is not a WASI command: {0}")]
    NotCommand(String),
    /// The engine could not be set up (a build problem, not the module's fault).
    #[error("wasmtime setup failed: {0}")]
    Setup(String),
}

/// The engine configuration every agent runs modules with, and the hub checks them with.
pub fn config() -> Config {
    let mut config = Config::new();
    // Agents interrupt guests on epoch ticks; the setting is part of the compiled code.
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
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

/// Whether `linker` can instantiate `module` and it is a command (`_start: () -> ()`).
pub fn check_module<T: 'static>(linker: &Linker<T>, module: &Module) -> Result<(), AdmitError> {
    linker
        .instantiate_pre(module)
        .map_err(|e| AdmitError::Imports(format!("{e:#}")))?;
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => Ok(()),
        Some(other) => Err(AdmitError::NotCommand(format!(
            "its `_start` export is {other:?}, not a function taking and returning nothing"
        ))),
        None => Err(AdmitError::NotCommand(
            "it exports no `_start` function (build it as a command, e.g. a `main` program for wasm32-wasip1)".into(),
        )),
    }
}

/// The hub's admission check: compiles a module the way agents will and checks it against
/// the agents' linker.
pub struct Checker {
    engine: Engine,
    linker: Linker<WasiP1Ctx>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

impl Checker {
    /// A checker with the agents' engine configuration and linker.
    pub fn new() -> Result<Checker, AdmitError> {
        let engine = engine()?;
        let linker = wasi_linker(&engine, |c: &mut WasiP1Ctx| c)?;
        Ok(Checker { engine, linker })
    }

    /// Compiles `bytes` and checks it. CPU-heavy: call from a blocking context.
    pub fn check(&self, bytes: &[u8]) -> Result<Module, AdmitError> {
        check_header(bytes)?;
        let module =
            Module::new(&self.engine, bytes).map_err(|e| AdmitError::Invalid(format!("{e:#}")))?;
        check_module(&self.linker, &module)?;
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    const COMMAND: &str = r#"(module (func (export "_start")))"#;

    #[test]
    fn accepts_a_command_and_refuses_the_rest_with_reasons() {
        let c = Checker::new().unwrap();
        c.check(&wat(COMMAND)).unwrap();
        assert_eq!(c.check(b"#!/bin/sh\n").unwrap_err(), AdmitError::NotWasm);
        assert_eq!(
            c.check(b"\0asm\x0d\0\x01\0").unwrap_err(),
            AdmitError::NotCoreModule
        );
        let err = c
            .check(&wat(r#"(module (func (export "main")))"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exports no `_start`"), "{err}");
        let err = c
            .check(&wat(
                r#"(module (import "env" "f" (func)) (func (export "_start")))"#,
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("env::f"), "names the import: {err}");
        let err = c
            .check(&wat(r#"(module (func (export "_start") (param i32)))"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a function taking and returning nothing"),
            "{err}"
        );
        let truncated = &wat(COMMAND)[..20];
        let err = c.check(truncated).unwrap_err();
        assert!(matches!(err, AdmitError::Invalid(_)), "{err}");
    }
}
