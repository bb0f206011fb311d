//! Embeds the example module (`examples/hello`, built for `wasm32-wasip1`) in `wasmfleet`, so
//! `wasmfleet demo` works from an installed binary, away from the source tree.
//!
//! The guest builds with its own cargo invocation into `<target>/guests`, shared with the
//! tests' builds of it. If it cannot be built here (no `wasm32-wasip1` target installed), the
//! hub still builds, with an empty module and a warning; the demo then asks for `--module`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let example = manifest_dir.join("../examples/hello");
    println!("cargo:rerun-if-changed=../examples/hello/src");
    println!("cargo:rerun-if-changed=../examples/hello/Cargo.toml");
    println!("cargo:rerun-if-changed=../examples/hello/Cargo.lock");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let target_dir = out
        .ancestors()
        .nth(4)
        .map_or_else(|| out.join("guests"), |t| t.join("guests"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--offline", "--quiet"])
        .args(["--target", "wasm32-wasip1", "--manifest-path"])
        .arg(example.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags and wrappers (clippy) are for the host crates, not the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .status();
    let built = target_dir.join("wasm32-wasip1/release/hello.wasm");
    let embedded = out.join("hello.wasm");
    match status {
        Ok(s) if s.success() && built.is_file() => {
            std::fs::copy(&built, &embedded).expect("copy hello.wasm into OUT_DIR");
        }
        other => {
            println!(
                "cargo:warning=examples/hello was not built for wasm32-wasip1 ({other:?}); `wasmfleet demo` will need --module. Run `rustup toolchain install` to get the target."
            );
            std::fs::write(&embedded, b"").expect("write OUT_DIR/hello.wasm");
        }
    }
}
