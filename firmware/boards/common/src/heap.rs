//! The global allocator: embedded-alloc's TLSF heap ([`TlsfHeap`]; good fit in O(1), so a freed
//! module's 64 KiB memory is found again instead of being split by first fit) plus a
//! high-water mark.
//!
//! embedded-alloc reports how much is in use now, not the most that ever was; the peak is what
//! decides whether a module fits a 256 KiB part, so this wrapper counts the bytes it hands out
//! and keeps their maximum. Requested sizes, not the allocator's rounding or fragmentation: a
//! heap can still fail below its size when the free space is scattered.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use embedded_alloc::TlsfHeap;

/// A heap that tracks its peak use. Declare it as the `#[global_allocator]` and give it a
/// region once with [`TrackingHeap::init`].
pub struct TrackingHeap {
    heap: TlsfHeap,
    initialised: AtomicBool,
    size: AtomicUsize,
    /// Bytes handed out now (requested sizes): counted here, because embedded-alloc 0.7's
    /// `TlsfHeap::used` borrows its heap twice and panics, and walks every block besides.
    used: AtomicUsize,
    peak: AtomicUsize,
    failed: AtomicUsize,
}

/// A snapshot of the heap's counters, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Size of the heap region.
    pub size: usize,
    /// Bytes allocated now.
    pub used: usize,
    /// Most bytes ever allocated at once since boot or the last [`TrackingHeap::reset_peak`].
    pub peak: usize,
    /// Allocations the heap could not satisfy (each one usually ends in an abort).
    pub failed: usize,
}

impl TrackingHeap {
    /// An allocator with no memory yet: every allocation fails until [`TrackingHeap::init`].
    pub const fn empty() -> Self {
        TrackingHeap {
            heap: TlsfHeap::empty(),
            initialised: AtomicBool::new(false),
            size: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        }
    }

    /// Hands the heap its region. The `'static mut` borrow proves nothing else uses it.
    ///
    /// # Panics
    /// On a second call: the heap cannot grow or move.
    pub fn init(&self, region: &'static mut [MaybeUninit<u8>]) {
        assert!(
            !self.initialised.swap(true, Ordering::AcqRel),
            "heap initialised twice"
        );
        let (start, size) = (region.as_mut_ptr() as usize, region.len());
        // SAFETY: the region is exclusively ours for the rest of the program (a `'static mut`
        // borrow) and this runs once (the flag above).
        unsafe { self.heap.init(start, size) };
        self.size.store(size, Ordering::Relaxed);
    }

    /// The current counters.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            size: self.size.load(Ordering::Relaxed),
            used: self.used.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Restarts the high-water mark from the current use, e.g. before starting a module to
    /// measure what that module costs.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.used.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Default for TrackingHeap {
    fn default() -> Self {
        TrackingHeap::empty()
    }
}

// SAFETY: every call is forwarded to `TlsfHeap`, a correct `GlobalAlloc` (it serialises
// itself with a critical section); the counters are only observed, never trusted for memory.
unsafe impl GlobalAlloc for TrackingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        let ptr = unsafe { self.heap.alloc(layout) };
        if ptr.is_null() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            let now = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded; `ptr` came from `alloc` above, i.e. from this same heap.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::vec;

    #[test]
    fn peak_survives_frees_and_resets_to_current_use() {
        let heap = TrackingHeap::empty();
        heap.init(Box::leak(
            vec![MaybeUninit::uninit(); 4096].into_boxed_slice(),
        ));
        let small = Layout::from_size_align(64, 8).unwrap();
        let big = Layout::from_size_align(1024, 8).unwrap();
        unsafe {
            let a = heap.alloc(small);
            let b = heap.alloc(big);
            assert!(!a.is_null() && !b.is_null());
            let at_peak = heap.stats();
            assert!(at_peak.peak >= 64 + 1024, "{at_peak:?}");
            heap.dealloc(b, big);
            let after = heap.stats();
            assert_eq!(after.peak, at_peak.peak, "the peak stays");
            assert!(after.used < at_peak.used);
            heap.reset_peak();
            assert_eq!(heap.stats().peak, heap.stats().used);
            assert!(
                heap.alloc(Layout::from_size_align(8192, 8).unwrap())
                    .is_null()
            );
            assert_eq!(heap.stats().failed, 1);
            assert_eq!(heap.stats().size, 4096);
            heap.dealloc(a, small);
        }
    }
}
