//! The microcontroller's WebAssembly runtime: wasmtime 50 with the Pulley interpreter,
//! `no_std` + `alloc`, running Wasmfleet event modules (host ABI `wasmfleet_v1`,
//! `modules/ABI.md`) from artifacts the hub precompiled with
//! [`wasmfleet_proto::engine::MCU_SETTINGS`].
//!
//! A board creates one [`Runtime`], loads artifacts ([`load_static`] from flash, [`load`]
//! into RAM), and runs each workload as an [`Instance`] over its [`Platform`]: it calls
//! [`Instance::start`], then from its main loop [`Instance::fire_due_timers`] at
//! [`Instance::next_deadline`], [`Instance::deliver_message`] for messages on the
//! instance's [`Instance::subscriptions`], [`Instance::deliver_gpio`] for watched edges, and
//! [`Instance::stop`] to end it. Everything returns a `Result`: a trap, an exhausted fuel
//! budget or an exceeded memory limit end the instance, never the firmware.
//!
//! Semantics mirror the Linux agent's `edge-agent/src/runtime/host` and `events.rs`: the
//! same checks, error codes, limits, timers and lifetime rules, so a module behaves the same
//! on both.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

extern crate alloc;

pub mod abi;
mod engine;
mod events;
mod filters;
mod guest;
mod host;
mod imports;
mod instance;
mod limiter;
mod outcome;
mod platform;
mod timers;
#[cfg(target_os = "none")]
mod tls;
mod workload;

#[cfg(not(target_os = "none"))]
pub use engine::HOSTED_TARGET;
pub use engine::{LoadError, MAX_WASM_STACK, Runtime, config, load, load_static};
pub use events::{Edge, EdgeQueue};
pub use filters::union_filters;
pub use imports::ImportError;
pub use instance::{Instance, InstanceError};
pub use limiter::{MemoryExceeded, TABLE_ELEMENT_BYTES};
pub use outcome::{Ended, State};
pub use platform::{
    Busy, DeviceError, DynI2c, DynSpi, Edges, ErasedI2c, ErasedSpi, KvError, KvStore, LogLevel,
    Platform,
};
#[cfg(target_os = "none")]
pub use tls::{wasmtime_tls_get, wasmtime_tls_set};
pub use wasmtime::Module;
pub use workload::{Fuel, Workload};
