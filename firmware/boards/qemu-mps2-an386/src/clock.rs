//! The monotonic millisecond clock: SysTick interrupts every millisecond and counts.
//!
//! SysTick runs from the processor clock, which QEMU's AN386 drives at SYSCLK = 25 MHz
//! (mps2.c), so a reload of 25 000 − 1 gives one interrupt per millisecond. QEMU's SysTick
//! follows its virtual clock, which tracks host time when not in icount mode.

use core::cell::Cell;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;

/// The processor clock SysTick counts.
pub const CORE_CLOCK_HZ: u32 = 25_000_000;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts the 1 kHz tick. Called once, by `init`.
pub(crate) fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_CLOCK_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ms = MILLIS.borrow(cs);
        ms.set(ms.get() + 1);
    });
}

/// Milliseconds since `init`; never goes backwards.
pub fn now_ms() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

/// Sleeps until `deadline_ms` or until something happens, whichever is first: returns at once
/// if the deadline has passed or received bytes wait in UART0's ring, otherwise waits for the
/// next interrupt (the tick wakes the core every millisecond, UART0 on every byte). Call it at
/// the bottom of the main loop with the time the next thing is due.
pub fn sleep_until(deadline_ms: u64) {
    // Checked with interrupts masked: a byte arriving after the check still ends the WFI
    // (a pending interrupt wakes the core even while masked), so no wake-up is lost.
    critical_section::with(|_| {
        if now_ms() < deadline_ms && crate::uart::rx_idle() {
            cortex_m::asm::wfi();
        }
    });
}
