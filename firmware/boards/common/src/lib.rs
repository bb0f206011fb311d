//! Pieces every Wasmfleet board crate needs that do not touch any particular chip:
//!
//! - [`heap::TrackingHeap`]: the global allocator (embedded-alloc's linked-list heap) wrapped
//!   to remember its high-water mark, which we report per module.
//! - [`ring::ByteRing`]: a bounded single-producer single-consumer byte queue, so a UART
//!   interrupt can hand bytes to the main loop without locks.
//! - [`stack`] (Cortex-M only): the stack's high-water mark, read from the paint cortex-m-rt's
//!   `paint-stack` feature leaves below the stack pointer.
//! - [`sim`]: the simulated devices of the Linux agent's `--devices sim` (a BME280 at 0x76,
//!   an LED and a button), so boards without real sensors (QEMU) expose the same device set.
//!
//! Everything here is `no_std` and also builds for the host, where its unit tests run:
//! `cargo test --target x86_64-unknown-linux-gnu -p wasmfleet-fw-board-common`.
#![no_std]

pub mod heap;
pub mod ring;
pub mod sim;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub mod stack;

pub use heap::{HeapStats, TrackingHeap};
pub use ring::ByteRing;
#[cfg(all(target_arch = "arm", target_os = "none"))]
pub use stack::{StackStats, stack_stats};
