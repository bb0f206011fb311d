//! One node brain, two bodies: the decisions of a Wasmfleet node, shared by `edge-agent` (tokio,
//! wasmtime with Cranelift artifacts) and the microcontroller firmware (bare metal, Pulley), so
//! a Linux node and an MCU cannot drift apart in how they admit, start, restart and report
//! workloads.
//!
//! `no_std` + `alloc` and sans-IO: no clock (time is a parameter, a [`core::time::Duration`]
//! since an arbitrary origin), no I/O, no runtime. Drivers carry out the returned actions.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod abi;
pub mod admission;
pub mod reconcile;

use core::time::Duration;

pub use admission::{NodeOffer, Verdict, admit, code_of};
pub use reconcile::{Action, Actual, Exit, RunState, WorkloadActual, reconcile, status};

/// `min(base · 2^step, max)`, without overflow for any `step`.
pub fn exponential(base: Duration, max: Duration, step: u32) -> Duration {
    base.checked_mul(1u32.checked_shl(step).unwrap_or(u32::MAX))
        .map_or(max, |d| d.min(max))
}

/// A byte count as a Kubernetes quantity: `64Mi`, `1.5Gi`, `512`.
pub fn format_bytes(bytes: u64) -> alloc::string::String {
    use alloc::string::ToString;
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return alloc::format!("{}{suffix}", bytes / unit);
            }
            return alloc::format!("{:.1}{suffix}", bytes as f64 / unit as f64);
        }
    }
    bytes.to_string()
}
