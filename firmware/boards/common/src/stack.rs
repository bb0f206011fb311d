//! The main stack's high-water mark on Cortex-M.
//!
//! With cortex-m-rt's `paint-stack` feature (both board crates enable it) the reset handler
//! fills the whole stack region, from `_stack_end` (the end of static RAM) up to
//! `_stack_start` (the top of RAM), with 0xCCCC_CCCC before `main`. The stack grows down and
//! overwrites that paint, so the lowest word that no longer holds it marks the deepest the
//! stack has been. Nothing stops the stack from growing into static RAM below `_stack_end`;
//! a peak equal to the size means it may have.

use core::ptr::addr_of;

/// What cortex-m-rt paints the stack with.
const PAINT: u32 = 0xCCCC_CCCC;

unsafe extern "C" {
    /// Top of the stack (its first push goes just below): cortex-m-rt's linker script.
    static _stack_start: u32;
    /// Lowest address the stack may use: the end of `.bss`/`.uninit`.
    static _stack_end: u32;
}

/// The stack region and how much of it was ever used, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    /// Size of the region between static RAM and the top of RAM.
    pub size: usize,
    /// Most of it ever used since reset.
    pub peak: usize,
}

/// Scans the paint from the bottom of the stack up: one read per never-used word, so call it
/// for reports, not in a hot loop.
pub fn stack_stats() -> StackStats {
    let top = addr_of!(_stack_start) as usize;
    let bottom = addr_of!(_stack_end) as usize;
    let mut lowest_used = top;
    let mut addr = bottom;
    while addr < top {
        // SAFETY: [bottom, top) is the stack region: RAM, word-aligned (the linker script
        // asserts both alignments), and reading a word of it never disturbs the program.
        if unsafe { core::ptr::read_volatile(addr as *const u32) } != PAINT {
            lowest_used = addr;
            break;
        }
        addr += 4;
    }
    StackStats {
        size: top - bottom,
        peak: top - lowest_used,
    }
}
