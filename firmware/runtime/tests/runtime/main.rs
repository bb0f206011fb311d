//! Host-side tests of the firmware runtime (`cargo test-host`): real wasmtime + Pulley
//! (`pulley64`, the host's pointer width) running WAT modules precompiled with the runtime's
//! own `config()`, over a mock board. One test binary: each links wasmtime and Cranelift.

mod abi_contract;
mod host_api;
mod lifecycle;
mod support;
