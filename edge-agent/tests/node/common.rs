//! Test helpers: build the `hello` guest once per test process, and make specs for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasmfleet_proto::{Digest, EnvVar, Limits, ModuleRef, RestartPolicy, WorkloadSpec};

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
        },
        restart: RestartPolicy::Never,
    }
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
