//! Embeds the example modules in `wasmfleet`, so `wasmfleet demo` (sensor → alarm across
//! nodes) and the tests work from an installed binary, away from the source tree:
//! `examples/hello` for `wasm32-wasip1` (a WASI command) and `examples/{sensor,alarm,counter}`
//! for `wasm32-unknown-unknown` (host API modules, over `modules/sdk`).
//!
//! Each guest builds with its own cargo invocation, from its own directory (so its
//! `.cargo/config.toml` applies), into `<target>/guests`, shared with `scripts/examples.sh`.
//! If one cannot be built here (a target not installed, no network for its dependencies), the
//! hub still builds, with an empty module and a warning; the demo then says what is missing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The embedded examples and their targets.
const EXAMPLES: &[(&str, &str)] = &[
    ("hello", "wasm32-wasip1"),
    ("sensor", "wasm32-unknown-unknown"),
    ("alarm", "wasm32-unknown-unknown"),
    ("counter", "wasm32-unknown-unknown"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target_dir = out
        .ancestors()
        .nth(4)
        .map_or_else(|| out.join("guests"), |t| t.join("guests"));
    for watched in ["../modules/sdk/src", "../modules/sdk/Cargo.toml"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    for (name, target) in EXAMPLES {
        for watched in ["src", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
            println!("cargo:rerun-if-changed=../examples/{name}/{watched}");
        }
        let dir = manifest_dir.join("../examples").join(name);
        build(&dir, name, target, &target_dir, &out);
    }
}

fn build(dir: &Path, name: &str, target: &str, target_dir: &Path, out: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--quiet", "--target", target])
        .arg("--target-dir")
        .arg(target_dir)
        // The outer build's flags and wrappers (clippy) are for the host crates, not the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .status();
    let built = target_dir
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    let embedded = out.join(format!("{name}.wasm"));
    match status {
        Ok(s) if s.success() && built.is_file() => {
            std::fs::copy(&built, &embedded).expect("copy the example module into OUT_DIR");
        }
        other => {
            println!(
                "cargo:warning=examples/{name} was not built for {target} ({other:?}); `wasmfleet demo` will not have it. Run `rustup toolchain install` to get the target."
            );
            std::fs::write(&embedded, b"").expect("write an empty module into OUT_DIR");
        }
    }
}
