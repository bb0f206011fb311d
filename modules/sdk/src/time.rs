//! Clocks. Modules have no `std::time`; these read the host's clocks directly.

use crate::sys;

pub use crate::delay::{Delay, delay_ns};
pub use crate::timer::Timer;

/// Nanoseconds since an arbitrary start; never decreases. For measuring intervals.
pub fn monotonic_ns() -> u64 {
    // SAFETY: no arguments.
    unsafe { sys::clock_monotonic_ns() as u64 }
}

/// Nanoseconds since the Unix epoch (UTC); may jump when the node's clock is set.
pub fn wall_ns() -> i64 {
    // SAFETY: no arguments.
    unsafe { sys::clock_wall_ns() }
}
