//! Wasmfleet `edge-agent`: converges a Linux node to the desired state the hub publishes over
//! MQTT and runs the WebAssembly workloads it names with wasmtime.
//!
//! Everything lives in this library so tests can drive it in-process; `main.rs` only parses
//! arguments and calls [`Agent::run`].
//!
//! - [`admission`] decides which desired workloads this node takes on (its announced capacity)
//!   and which code blob each runs (the hub's precompiled artifact, or source with a compiler).
//! - [`reconcile`] is the pure core: desired + actual + time → actions and status.
//! - [`blobs`] stores modules by digest and fetches them chunk by chunk (sans-IO requester).
//! - [`logbudget`] bounds what each workload may print (sans-IO token buckets).
//! - [`state`] persists the last desired state so the node restarts its work without the hub.
//! - [`runtime`] is the only module that touches wasmtime; its `host` module is the host API
//!   modules call (`modules/ABI.md`).
//! - [`devices`] is the hardware behind it (`embedded-hal`: simulated or Linux devices),
//!   [`kv`] the persistent key-value stores, [`apps`] the application message router.
//! - [`link`] is the MQTT driver.
//! - [`agent`] is the event loop that ties them together.

pub mod agent;
pub mod apps;
pub mod blobs;
pub mod config;
pub mod devices;
pub mod kv;
pub mod link;
pub mod logbudget;
pub mod runtime;
pub mod state;

pub use agent::{Agent, AgentError};
pub use config::{Cli, Config, ConfigError};
