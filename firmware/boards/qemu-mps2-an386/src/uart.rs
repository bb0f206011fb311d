//! UART0, the serial line QEMU connects to its first `-serial` (a TCP socket in
//! `scripts/qemu.sh`): the node's link to its gateway.
//!
//! Receiving is interrupt driven: the receive interrupt moves each byte into a
//! [`RX_CAPACITY`]-byte ring, and the main loop takes them with the non-blocking
//! [`Uart0::read`] whenever it is ready. When the ring is full the interrupt leaves the byte in
//! the UART, and QEMU then holds back the rest of the stream (see `cmsdk_uart`); reading
//! resumes the flow. So no byte is lost however long the main loop is busy. Sending is
//! blocking and polled ([`Uart0::write_all`]): the UART holds one byte, and QEMU drains it at
//! socket speed.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use wasmfleet_fw_board_common::ByteRing;

use crate::cmsdk_uart::UART0;
use crate::vectors::Interrupt;

/// Size of the receive ring (static RAM): ~90 ms of a 115 200 baud line.
pub const RX_CAPACITY: usize = 1024;

static RX: ByteRing<RX_CAPACITY> = ByteRing::new();
/// Set while a received byte waits in the UART because the ring was full.
static RX_PAUSED: AtomicBool = AtomicBool::new(false);
/// How often the ring filled up and held back the line (a sign of a slow main loop).
static RX_STALLS: AtomicU32 = AtomicU32::new(0);

/// The UART0 driver; [`crate::init`] hands out the only one.
#[derive(Debug)]
pub struct Uart0 {
    _owned: (),
}

impl Uart0 {
    /// Enables UART0 with its receive interrupt. Called once, by `init`.
    pub(crate) fn new() -> Uart0 {
        UART0.enable(true);
        // SAFETY: the handler only touches the ring (as its single producer) and UART0's
        // registers, and `read` masks it around its own producing; unmasking here cannot
        // break a critical section, none is open during `init`.
        unsafe { cortex_m::peripheral::NVIC::unmask(Interrupt::Uart0Rx) };
        Uart0 { _owned: () }
    }

    /// Moves received bytes into `buf` without waiting; returns how many (0 if none).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        // SAFETY: `&mut self` on the only `Uart0` makes this the only consumer.
        let n = unsafe { RX.pop_into(buf) };
        if RX_PAUSED.load(Ordering::Acquire) && !RX.is_full() {
            // The interrupt will not come back by itself: resume with it masked, so this is
            // the ring's only producer meanwhile.
            critical_section::with(|_| drain());
        }
        n
    }

    /// Bytes received and not yet read.
    pub fn available(&self) -> usize {
        RX.len()
    }

    /// How many times the receive ring filled up and the line was held back.
    pub fn rx_stalls(&self) -> u32 {
        RX_STALLS.load(Ordering::Relaxed)
    }

    /// Bytes lost to receive errors: always 0 here, QEMU's UART holds the stream back instead
    /// of overrunning (the nRF52840's can lose bytes).
    pub fn rx_errors(&self) -> u32 {
        0
    }

    /// Sends all of `bytes`, waiting for the UART as needed.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            UART0.write_byte(b);
        }
    }
}

impl core::fmt::Write for Uart0 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}

/// Whether no received byte waits for the main loop.
pub(crate) fn rx_idle() -> bool {
    RX.is_empty() && !RX_PAUSED.load(Ordering::Acquire)
}

/// Moves waiting bytes from the UART into the ring until either is empty/full. Runs in the
/// interrupt, or in `read` with the interrupt masked: one producer at a time.
fn drain() {
    // Acknowledge first: a byte arriving after this sets the flag again and re-enters.
    UART0.clear_rx_interrupt();
    while UART0.rx_full() {
        if RX.is_full() {
            if !RX_PAUSED.swap(true, Ordering::AcqRel) {
                RX_STALLS.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if let Some(byte) = UART0.read_byte() {
            // SAFETY: only `drain` pushes, and it never runs twice at once (see above).
            unsafe { RX.push(byte) };
        }
    }
    RX_PAUSED.store(false, Ordering::Release);
}

/// UART0 receive interrupt (vector table slot 0, see `vectors`).
pub(crate) unsafe extern "C" fn uart0_rx_interrupt() {
    drain();
}
