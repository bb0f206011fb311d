//! Puts memory.x (the nRF52840 memory map) on the linker's search path of every binary that
//! links this crate; cortex-m-rt's link.x includes it. (The PAC supplies device.x.)

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-search={}", out.display());
}
