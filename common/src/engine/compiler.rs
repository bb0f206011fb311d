//! Compiling modules (feature `compiler`): the hub's admission check and its per-profile
//! compiler, and local compilation on agents built with a compiler.

use std::collections::BTreeMap;
use std::sync::Mutex;

use wasmfleet_proto::EngineProfile;
use wasmfleet_proto::engine::{MCU_SETTINGS_FINGERPRINT, PULLEY32};
use wasmtime::{Config, Engine, Linker, Module};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::{AdmitError, WASMTIME_VERSION, check_header, check_module, settings_fingerprint};

/// The agents' configuration, compiling for `target` (a Rust target triple) at the target's
/// baseline: no optional CPU features, so the code runs on every CPU of that architecture.
pub fn config_for(target: &str) -> Result<Config, AdmitError> {
    let mut config = super::config();
    config
        .target(target)
        .map_err(|e| AdmitError::Setup(format!("target {target:?}: {e:#}")))?;
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(config)
}

/// The configuration of microcontroller firmware ([`wasmfleet_proto::engine::MCU_SETTINGS`]),
/// compiling for the Pulley interpreter: no virtual memory tricks (no reservation, guard pages
/// or copy-on-write images; explicit bounds checks), no GC or async, and fuel instead of epochs
/// (32-bit MCUs have no 64-bit atomics). The firmware's runtime sets the same.
pub fn mcu_config() -> Result<Config, AdmitError> {
    let mut config = Config::new();
    config.target(PULLEY32).map_err(|e| {
        AdmitError::Setup(format!(
            "target {PULLEY32}: {e:#} (compiling for microcontrollers needs feature `cross`)"
        ))
    })?;
    config.gc_support(false);
    // The firmware's wasmtime has no component model: artifacts must not ask for it.
    config.wasm_component_model(false);
    config.memory_init_cow(false);
    config.concurrency_support(false);
    config.signals_based_traps(false);
    config.memory_reservation(0);
    config.memory_guard_size(0);
    config.memory_reservation_for_growth(0);
    config.wasm_custom_page_sizes(true);
    config.consume_fuel(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(config)
}

/// Compiles modules for nodes, once per engine profile. Engines are built on first use per
/// target and kept: creating one costs milliseconds, compiling with it is the real work.
pub struct Compiler {
    engines: Mutex<BTreeMap<String, Result<Engine, String>>>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler").finish_non_exhaustive()
    }
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::new()
    }
}

impl Compiler {
    /// A compiler with no engines built yet.
    pub fn new() -> Compiler {
        Compiler {
            engines: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether artifacts of this hub load on a node of `profile`; the error says why not
    /// (the node then compiles the source module itself, if it can).
    pub fn fits(&self, profile: &EngineProfile) -> Result<(), String> {
        let (ours, what) = if profile.target == PULLEY32 {
            (MCU_SETTINGS_FINGERPRINT, "microcontroller firmware")
        } else {
            (settings_fingerprint(), "agents")
        };
        if profile.wasmtime != WASMTIME_VERSION {
            return Err(format!(
                "the node runs wasmtime {}, this hub compiles with wasmtime {WASMTIME_VERSION}",
                profile.wasmtime
            ));
        }
        if profile.settings != ours {
            return Err(format!(
                "the node's engine settings (fingerprint {:016x}) differ from those this hub \
                 compiles for {what} ({ours:016x})",
                profile.settings,
            ));
        }
        self.engine(&profile.target).map(|_| ())
    }

    /// Compiles `wasm` for `profile`. CPU-heavy: call from a blocking context.
    pub fn compile(&self, profile: &EngineProfile, wasm: &[u8]) -> Result<Vec<u8>, AdmitError> {
        self.fits(profile).map_err(AdmitError::Setup)?;
        let engine = self.engine(&profile.target).map_err(AdmitError::Setup)?;
        engine
            .precompile_module(wasm)
            .map_err(|e| AdmitError::Invalid(format!("{e:#}")))
    }

    fn engine(&self, target: &str) -> Result<Engine, String> {
        let mut engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        engines
            .entry(target.to_owned())
            .or_insert_with(|| {
                let config = if target == PULLEY32 {
                    mcu_config()
                } else {
                    config_for(target)
                }
                .map_err(|e| e.to_string())?;
                Engine::new(&config)
                    .map_err(|e| format!("this hub cannot compile for target {target}: {e:#}"))
            })
            .clone()
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
    /// A checker with the agents' engine configuration and linker, for this host's
    /// architecture at its baseline (so the module it compiles is also the artifact for
    /// nodes of the hub's own architecture).
    pub fn new() -> Result<Checker, AdmitError> {
        let engine = Engine::new(&config_for(&target_lexicon::HOST.to_string())?)
            .map_err(|e| AdmitError::Setup(format!("{e:#}")))?;
        let mut linker = super::wasi_linker(&engine, |c: &mut WasiP1Ctx| c)?;
        super::add_abi_signatures(&mut linker)?;
        Ok(Checker { engine, linker })
    }

    /// Compiles `bytes` and checks it: every import is WASI preview 1 or a host API function
    /// of the right type, and it is a command or an event module. Which capabilities it needs
    /// is judged per deployment ([`crate::abi::check_imports`]). CPU-heavy: call from a
    /// blocking context.
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
        assert!(err.contains("neither `on_start`"), "{err}");
        c.check(&wat(
            r#"(module (import "wasmfleet_v1" "i2c_open" (func (param i32 i32) (result i32)))
                (memory (export "memory") 1) (func (export "on_start")))"#,
        ))
        .unwrap();
        let err = c
            .check(&wat(
                r#"(module (import "wasmfleet_v1" "i2c_open" (func (param i32) (result i32)))
                (memory (export "memory") 1) (func (export "on_start")))"#,
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("i2c_open"), "names the mistyped import: {err}");
        let err = c
            .check(&wat(r#"(module (func (export "on_start")))"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no memory named `memory`"), "{err}");
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

    #[test]
    #[cfg(feature = "cross")]
    fn compiles_for_microcontrollers_with_the_firmware_settings_only() {
        let compiler = Compiler::new();
        let mcu = EngineProfile {
            target: PULLEY32.into(),
            cpu_features: vec![],
            wasmtime: WASMTIME_VERSION.into(),
            settings: MCU_SETTINGS_FINGERPRINT,
            compiler: false,
        };
        let module = r#"(module (memory (export "memory") 1) (func (export "on_start")))"#;
        let artifact = compiler.compile(&mcu, &wat(module)).unwrap();
        assert_eq!(&artifact[..4], b"\x7fELF");
        // Pulley bytecode, not machine code for this host (e_machine 62 is x86-64).
        assert_ne!(u16::from_le_bytes([artifact[18], artifact[19]]), 62);
        // A node with the agents' settings but the Pulley target is not served MCU code.
        let agentish = EngineProfile {
            settings: settings_fingerprint(),
            ..mcu
        };
        let why = compiler.fits(&agentish).unwrap_err();
        assert!(why.contains("microcontroller firmware"), "{why}");
    }

    #[test]
    #[cfg(feature = "cross")]
    fn compiles_for_another_architecture_and_explains_profiles_it_cannot_serve() {
        let compiler = Compiler::new();
        let mut arm = crate::engine::host_profile(false);
        arm.target = "aarch64-unknown-linux-gnu".into();
        let artifact = compiler.compile(&arm, &wat(COMMAND)).unwrap();
        // An ELF object for machine 183 (EM_AARCH64).
        assert_eq!(&artifact[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([artifact[18], artifact[19]]), 183);

        let mut old = arm.clone();
        old.wasmtime = "49.0.0".into();
        let why = compiler.fits(&old).unwrap_err();
        assert!(why.contains("wasmtime 49.0.0"), "{why}");
        let mut other = arm.clone();
        other.settings ^= 1;
        assert!(
            compiler
                .fits(&other)
                .unwrap_err()
                .contains("engine settings")
        );
        let mut exotic = arm;
        exotic.target = "s390x-unknown-linux-gnu".into();
        let why = compiler.fits(&exotic).unwrap_err();
        assert!(why.contains("s390x"), "{why}");
    }
}
