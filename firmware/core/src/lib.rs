//! The microcontroller node's decisions, sans-IO and `no_std`: what to ask the gateway for,
//! where artifacts go in flash, what to run, what to report. Boards feed it link messages,
//! instance exits and the time, and carry out the [`Effect`]s it returns; nothing here touches
//! a peripheral, a clock or wasmtime, so all of it is tested on the host (`cargo test-host`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod artifacts;
pub mod fetch;
pub mod kv;
pub mod logs;
pub mod node;

pub use artifacts::{ArtifactStore, Extent};
pub use kv::{FlashKv, KvFlash, KvFlashError};
pub use logs::LogBuffer;
pub use node::{Effect, Node, NodeConfig};
pub use wasmfleet_node::Exit;
