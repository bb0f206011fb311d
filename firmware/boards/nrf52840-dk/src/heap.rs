//! The global allocator over a static [`HEAP_SIZE`]-byte region, with its high-water mark.

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use wasmfleet_fw_board_common::{HeapStats, TrackingHeap};

/// Heap size (static RAM). Of the 256 KiB RAM this leaves ~94 KiB for the stack and the
/// drivers' few KiB of buffers; wasmtime with one small module peaks near 25 KiB.
pub const HEAP_SIZE: usize = 160 * 1024;

#[global_allocator]
static HEAP: TrackingHeap = TrackingHeap::empty();

static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];

/// Gives the allocator its region. Called once, by `init` (which runs once).
pub(crate) fn init() {
    // SAFETY: `init` runs once (it owns the core peripherals, which can be taken once), so
    // this is the only reference to `HEAP_MEM` ever made.
    HEAP.init(unsafe { &mut *addr_of_mut!(HEAP_MEM) });
}

/// Heap size, current use, high-water mark and failed allocations, in bytes.
pub fn heap_stats() -> HeapStats {
    HEAP.stats()
}

/// Restarts the high-water mark from the current use (e.g. just before starting a module).
pub fn reset_heap_peak() {
    HEAP.reset_peak();
}
