//! The agent against real guests and real sockets: the runtime with the `hello` guest, the
//! agent in-process without a broker, and the agent against a scripted broker.
//!
//! One test binary with a module per theme, so wasmtime is linked once, not once per file.

mod agent;
mod common;
mod host_api;
mod runtime;
mod subscribe;
