//! A bounded single-producer single-consumer byte queue without locks.
//!
//! A UART receive interrupt pushes each byte as it arrives; the main loop pops them whenever
//! it gets round to it. With one writer of `head` and one writer of `tail`, plain atomic loads
//! and stores suffice (no compare-and-swap, so it also works on cores without it), and the
//! interrupt never waits for the main loop.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Holds up to `N` bytes; `N` must be a power of two (indices wrap freely).
pub struct ByteRing<const N: usize> {
    buf: UnsafeCell<[u8; N]>,
    /// Bytes ever pushed (wrapping); written by the producer only.
    head: AtomicUsize,
    /// Bytes ever popped (wrapping); written by the consumer only.
    tail: AtomicUsize,
}

// SAFETY: the producer only writes slots between `head` and `tail + N`, the consumer only
// reads slots between `tail` and `head`; each index is published with release/acquire after
// its slots are written/read. The `unsafe` push/pop contracts keep it one producer and one
// consumer.
unsafe impl<const N: usize> Sync for ByteRing<N> {}

impl<const N: usize> ByteRing<N> {
    const POWER_OF_TWO: () = assert!(N.is_power_of_two(), "ByteRing size must be 2^k");

    /// An empty ring.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::POWER_OF_TWO;
        ByteRing {
            buf: UnsafeCell::new([0; N]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// How many bytes it holds at most.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes waiting to be popped.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        head.wrapping_sub(tail)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a push would fail.
    pub fn is_full(&self) -> bool {
        self.len() >= N
    }

    /// Appends a byte; `false` (and the byte is not stored) when full.
    ///
    /// # Safety
    /// At most one context pushes at a time (e.g. only the receive interrupt, or code that
    /// masks it).
    pub unsafe fn push(&self, byte: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= N {
            return false;
        }
        // SAFETY: slot `head` is outside the consumer's range [tail, head) and we are the only
        // producer, so nobody else touches it.
        unsafe { (*self.buf.get())[head % N] = byte };
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Moves up to `out.len()` bytes into `out`, oldest first; returns how many.
    ///
    /// # Safety
    /// At most one context pops at a time (normally the main loop).
    pub unsafe fn pop_into(&self, out: &mut [u8]) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = head.wrapping_sub(tail).min(out.len());
        for (i, slot) in out[..n].iter_mut().enumerate() {
            // SAFETY: slots [tail, head) were published by the producer (acquire above) and
            // it will not overwrite them until `tail` moves past them (release below).
            *slot = unsafe { (*self.buf.get())[tail.wrapping_add(i) % N] };
        }
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        ByteRing::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_refuses_when_full_and_wraps() {
        let ring = ByteRing::<4>::new();
        let mut out = [0; 8];
        for round in 0..5u8 {
            unsafe {
                for i in 0..4 {
                    assert!(ring.push(round * 10 + i));
                }
                assert!(ring.is_full());
                assert!(!ring.push(99), "full ring refuses");
                assert_eq!(ring.pop_into(&mut out[..3]), 3);
                assert_eq!(&out[..3], &[round * 10, round * 10 + 1, round * 10 + 2]);
                assert_eq!(ring.pop_into(&mut out), 1);
                assert_eq!(out[0], round * 10 + 3);
                assert!(ring.is_empty());
            }
        }
    }
}
