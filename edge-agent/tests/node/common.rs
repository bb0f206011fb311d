//! Test helpers: build the `hello` guest once per test process, and make specs for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasmfleet_proto::{
    Capabilities, Code, Digest, EnvVar, Limits, ModuleRef, RestartPolicy, WorkloadSpec,
};

/// Builds `examples/hello` for wasm32-wasip1 (once per process; cargo's lock serialises
/// concurrent test processes) and returns the `.wasm` path.
pub fn hello_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
                "examples/hello/Cargo.toml",
            ])
            .args(["--target-dir", "target/guests"])
            .status()
            .expect("run cargo to build the hello guest");
        assert!(status.success(), "building the hello guest failed");
        root.join("target/guests/wasm32-wasip1/release/hello.wasm")
    })
}

/// The guest's bytes.
pub fn hello_bytes() -> Vec<u8> {
    std::fs::read(hello_wasm()).expect("read hello.wasm")
}

/// A spec running `hello` (digest `digest`, size `size`) with `args`.
pub fn spec(name: &str, module: ModuleRef, args: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        name: name.into(),
        deployment: "hello".into(),
        revision: 1,
        module,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![EnvVar {
            name: "GREETING".into(),
            value: "hi".into(),
        }],
        limits: Limits {
            memory_bytes: 64 << 20,
            cpu_millis: None,
            max_run_ms: None,
        },
        restart: RestartPolicy::Never,
        code: Code::Source,
        namespace: "default".into(),
        config: vec![],
        capabilities: Capabilities::default(),
    }
}

/// The artifact the hub would ship for `wasm` to a node like this one.
pub fn precompile(wasm: &[u8]) -> Vec<u8> {
    let profile = wasmfleet_common::engine::host_profile(false);
    wasmfleet_common::engine::Compiler::new()
        .compile(&profile, wasm)
        .expect("precompile for this host")
}

/// `spec` running the hub's artifact `artifact` (of source module `spec.module`).
pub fn with_artifact(mut spec: WorkloadSpec, artifact: &[u8]) -> WorkloadSpec {
    spec.code = Code::Precompiled(module_ref(artifact));
    spec
}

/// A module reference for `bytes`.
pub fn module_ref(bytes: &[u8]) -> ModuleRef {
    ModuleRef {
        digest: wasmfleet_common::digest::sha256(bytes),
        size: bytes.len() as u64,
    }
}

/// Digest of nothing in particular, for corrupt modules.
pub fn some_digest(b: u8) -> Digest {
    Digest([b; 32])
}
