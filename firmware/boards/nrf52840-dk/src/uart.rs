//! UARTE0 on the DK's virtual COM port (P0.06 TXD, P0.08 RXD, through the on-board J-Link's
//! USB serial), 115 200 baud 8N1: the node's link to its gateway.
//!
//! The UARTE moves data by EasyDMA only, so receiving is a chain of one-byte DMA transfers:
//! each ENDRX interrupt moves the byte into a [`RX_CAPACITY`]-byte ring and starts the next
//! transfer. Between transfers the UARTE keeps arriving bytes in its internal RX FIFO, so the
//! interrupt may run a few byte times late without loss (a byte lasts 87 µs). When the ring
//! is full the interrupt stops restarting reception until [`Uart0::read`] makes room: with
//! the `uart-flow-control` feature RTS then holds the sender off and nothing is lost;
//! without it the FIFO overruns and [`Uart0::rx_errors`] counts it. The same applies while a
//! flash erase stalls the CPU (see `flash`).
//!
//! Sending is blocking: chunks of [`TX_CHUNK`] bytes are copied to a RAM buffer (EasyDMA
//! cannot read flash) and sent one DMA transfer at a time.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, compiler_fence};

use nrf52840_hal::gpio::{Level, Pin, p0};
use nrf52840_hal::pac::{self, UARTE0, interrupt};
use wasmfleet_fw_board_common::ByteRing;

/// Size of the receive ring (static RAM): ~90 ms of the 115 200 baud line.
pub const RX_CAPACITY: usize = 1024;
/// Size of the transmit DMA buffer (static RAM).
pub const TX_CHUNK: usize = 64;

static RX: ByteRing<RX_CAPACITY> = ByteRing::new();
/// Set while reception is stopped because the ring is full.
static RX_PAUSED: AtomicBool = AtomicBool::new(false);
/// Receive errors the UARTE reported (overrun, framing, parity, break).
static RX_ERRORS: AtomicU32 = AtomicU32::new(0);
/// How often the ring filled up and reception stopped (a sign of a slow main loop).
static RX_STALLS: AtomicU32 = AtomicU32::new(0);
/// The one-byte DMA target of each receive transfer; written by the UARTE.
static mut RX_DMA: u8 = 0;
/// The transmit DMA source; only `write_all` (through `&mut Uart0`) touches it.
static mut TX_DMA: [u8; TX_CHUNK] = [0; TX_CHUNK];

/// The UARTE0 driver; [`crate::init`] hands out the only one.
pub struct Uart0 {
    uarte: UARTE0,
}

impl core::fmt::Debug for Uart0 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Uart0")
    }
}

/// The DK's VCOM pins, and with flow control its RTS/CTS lines.
pub(crate) struct UartPins {
    pub txd: p0::P0_06<nrf52840_hal::gpio::Disconnected>,
    pub rxd: p0::P0_08<nrf52840_hal::gpio::Disconnected>,
    #[cfg(feature = "uart-flow-control")]
    pub rts: p0::P0_05<nrf52840_hal::gpio::Disconnected>,
    #[cfg(feature = "uart-flow-control")]
    pub cts: p0::P0_07<nrf52840_hal::gpio::Disconnected>,
}

impl Uart0 {
    /// Configures UARTE0 and starts receiving. Called once, by `init`.
    pub(crate) fn new(uarte: UARTE0, pins: UartPins) -> Uart0 {
        // TXD idles high; drive it before connecting so the line never glitches low.
        let txd: Pin<_> = pins.txd.into_push_pull_output(Level::High).degrade();
        let rxd: Pin<_> = pins.rxd.into_floating_input().degrade();
        // SAFETY (all PSEL writes): the value is a pin number with CONNECT (bit 31) clear.
        uarte.psel.txd.write(|w| unsafe { w.bits(txd.psel_bits()) });
        uarte.psel.rxd.write(|w| unsafe { w.bits(rxd.psel_bits()) });
        #[cfg(feature = "uart-flow-control")]
        {
            let rts: Pin<_> = pins.rts.into_push_pull_output(Level::High).degrade();
            let cts: Pin<_> = pins.cts.into_floating_input().degrade();
            uarte.psel.rts.write(|w| unsafe { w.bits(rts.psel_bits()) });
            uarte.psel.cts.write(|w| unsafe { w.bits(cts.psel_bits()) });
        }
        uarte.config.write(|w| {
            w.hwfc().bit(cfg!(feature = "uart-flow-control"));
            w.parity().excluded()
        });
        uarte.baudrate.write(|w| w.baudrate().baud115200());
        uarte.enable.write(|w| w.enable().enabled());

        uarte.rxd.maxcnt.write(|w| unsafe { w.maxcnt().bits(1) });
        // SAFETY: RX_DMA is a static (RAM, as EasyDMA requires) that only the UARTE writes and
        // only the interrupt reads, after each ENDRX.
        uarte
            .rxd
            .ptr
            .write(|w| unsafe { w.ptr().bits(addr_of_mut!(RX_DMA) as u32) });
        uarte.events_endrx.reset();
        uarte.events_error.reset();
        uarte.intenset.write(|w| w.endrx().set().error().set());
        uarte.tasks_startrx.write(|w| unsafe { w.bits(1) });
        // SAFETY: the handler only touches the ring (as its single producer while unmasked)
        // and UARTE0's receive registers, which nothing else uses after this point.
        unsafe { cortex_m::peripheral::NVIC::unmask(pac::Interrupt::UARTE0_UART0) };
        Uart0 { uarte }
    }

    /// Moves received bytes into `buf` without waiting; returns how many (0 if none).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        // SAFETY: `&mut self` on the only `Uart0` makes this the only consumer.
        let n = unsafe { RX.pop_into(buf) };
        if n > 0 && RX_PAUSED.load(Ordering::Acquire) {
            critical_section::with(|_| {
                if RX_PAUSED.swap(false, Ordering::AcqRel) {
                    self.uarte.tasks_startrx.write(|w| unsafe { w.bits(1) });
                }
            });
        }
        n
    }

    /// Bytes received and not yet read.
    pub fn available(&self) -> usize {
        RX.len()
    }

    /// How many times the receive ring filled up and reception stopped until `read`.
    pub fn rx_stalls(&self) -> u32 {
        RX_STALLS.load(Ordering::Relaxed)
    }

    /// Receive errors so far (overruns when the interrupt or the main loop fell behind,
    /// framing errors, breaks).
    pub fn rx_errors(&self) -> u32 {
        RX_ERRORS.load(Ordering::Relaxed)
    }

    /// Sends all of `bytes`, waiting until the last one has left the DMA buffer.
    pub fn write_all(&mut self, bytes: &[u8]) {
        let tx = addr_of_mut!(TX_DMA).cast::<u8>();
        for chunk in bytes.chunks(TX_CHUNK) {
            // SAFETY: no transfer is running (each ends below before the next starts), so
            // nothing else reads TX_DMA; `&mut self` keeps other callers out; a chunk fits.
            unsafe { core::ptr::copy_nonoverlapping(chunk.as_ptr(), tx, chunk.len()) };
            compiler_fence(Ordering::SeqCst);
            let u = &self.uarte;
            u.txd
                .ptr
                .write(|w| unsafe { w.ptr().bits(addr_of!(TX_DMA) as u32) });
            u.txd
                .maxcnt
                .write(|w| unsafe { w.maxcnt().bits(chunk.len() as u16) });
            u.events_endtx.reset();
            u.tasks_starttx.write(|w| unsafe { w.bits(1) });
            while u.events_endtx.read().bits() == 0 {
                core::hint::spin_loop();
            }
            compiler_fence(Ordering::SeqCst);
            // Stop the transmitter between writes: it draws current while started.
            u.events_txstopped.reset();
            u.tasks_stoptx.write(|w| unsafe { w.bits(1) });
            while u.events_txstopped.read().bits() == 0 {
                core::hint::spin_loop();
            }
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
    RX.is_empty()
}

#[interrupt]
fn UARTE0_UART0() {
    // SAFETY: the interrupt only uses receive registers and events, which `Uart0` leaves to
    // it after `new`; the register block is always mapped.
    let uarte = unsafe { &*UARTE0::ptr() };
    if uarte.events_error.read().bits() != 0 {
        uarte.events_error.reset();
        let source = uarte.errorsrc.read().bits();
        // Write-one-to-clear.
        uarte.errorsrc.write(|w| unsafe { w.bits(source) });
        RX_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    if uarte.events_endrx.read().bits() != 0 {
        uarte.events_endrx.reset();
        compiler_fence(Ordering::SeqCst);
        if uarte.rxd.amount.read().bits() == 1 {
            // SAFETY: the transfer into RX_DMA has ended and the next is not started yet.
            let byte = unsafe { addr_of!(RX_DMA).read_volatile() };
            // SAFETY: this interrupt is the ring's only producer. It cannot be full here:
            // reception stops below whenever the ring fills.
            unsafe { RX.push(byte) };
        }
        if RX.is_full() {
            RX_PAUSED.store(true, Ordering::Release);
            RX_STALLS.fetch_add(1, Ordering::Relaxed);
        } else {
            uarte.tasks_startrx.write(|w| unsafe { w.bits(1) });
        }
    }
}
