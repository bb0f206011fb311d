//! The monotonic millisecond clock: RTC1 counting the 32.768 kHz crystal (LFXO on the DK).
//!
//! The RTC keeps counting in System ON sleep at microamps, unlike SysTick (the CPU clock),
//! which is why it is the clock here. Its counter is 24 bits (wraps every 512 s); the overflow
//! interrupt extends it to 64 bits. Compare channel 0 wakes [`sleep_until`].

use core::cell::Cell;

use critical_section::Mutex;
use nrf52840_hal::pac::{self, RTC1, interrupt};

/// RTC ticks per second (prescaler 0).
pub const TICK_HZ: u64 = 32_768;
const COUNTER_BITS: u32 = 24;
const COUNTER_MASK: u32 = (1 << COUNTER_BITS) - 1;
/// The RTC only promises a compare event for CC ≥ COUNTER + 2.
const MIN_COMPARE_DISTANCE: u64 = 2;

/// Counter overflows so far: bits 24.. of the 64-bit tick count.
static OVERFLOWS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts RTC1 from 0 with its overflow interrupt. The low-frequency clock must be running.
/// Called once, by `init`.
pub(crate) fn init(rtc: RTC1) {
    rtc.tasks_stop.write(|w| unsafe { w.bits(1) });
    rtc.tasks_clear.write(|w| unsafe { w.bits(1) });
    rtc.prescaler.write(|w| unsafe { w.prescaler().bits(0) });
    rtc.events_ovrflw.reset();
    rtc.events_compare[0].reset();
    rtc.intenset.write(|w| w.ovrflw().set().compare0().set());
    rtc.tasks_start.write(|w| unsafe { w.bits(1) });
    // SAFETY: the handler only updates OVERFLOWS inside a critical section and clears events.
    unsafe { cortex_m::peripheral::NVIC::unmask(pac::Interrupt::RTC1) };
}

fn rtc() -> &'static pac::rtc0::RegisterBlock {
    // SAFETY: RTC1 is owned by this module after `init`; the register block is always mapped.
    unsafe { &*RTC1::ptr() }
}

/// Ticks since `init`. Inside a critical section the overflow interrupt cannot run, so a
/// pending overflow event is counted here instead.
fn ticks(cs: critical_section::CriticalSection<'_>) -> u64 {
    let rtc = rtc();
    let mut high = OVERFLOWS.borrow(cs).get();
    let mut low = rtc.counter.read().bits();
    if rtc.events_ovrflw.read().bits() != 0 {
        // Wrapped but not yet counted: re-read, certainly after the wrap.
        high += 1;
        low = rtc.counter.read().bits();
    }
    (high << COUNTER_BITS) | u64::from(low)
}

/// Milliseconds since `init`; never goes backwards.
pub fn now_ms() -> u64 {
    critical_section::with(|cs| ticks(cs) * 1000 / TICK_HZ)
}

/// Sleeps until `deadline_ms` or until something happens, whichever is first: returns at once
/// if the deadline has passed or received bytes wait in UART0's ring, otherwise sleeps
/// (WFI, System ON) until an interrupt: the RTC compare set for the deadline, a received byte,
/// or a counter overflow. Call it at the bottom of the main loop with the time the next thing
/// is due.
pub fn sleep_until(deadline_ms: u64) {
    critical_section::with(|cs| {
        let now = ticks(cs);
        // Round up, so we never wake before the deadline's millisecond.
        let deadline = (deadline_ms * TICK_HZ).div_ceil(1000);
        if deadline <= now + MIN_COMPARE_DISTANCE || !crate::uart::rx_idle() {
            return;
        }
        // More than half a counter period away: wake half-way and let the caller loop.
        let wake = deadline.min(now + (1 << (COUNTER_BITS - 1)));
        rtc().cc[0].write(|w| unsafe { w.bits(wake as u32 & COUNTER_MASK) });
        // A pending interrupt ends WFI even while masked, so an event after the checks above
        // still wakes us; its handler runs when the critical section ends.
        cortex_m::asm::wfi();
    });
}

#[interrupt]
fn RTC1() {
    let rtc = rtc();
    // Clear and count together, so no reader sees the event gone but the count not yet up.
    critical_section::with(|cs| {
        if rtc.events_ovrflw.read().bits() != 0 {
            rtc.events_ovrflw.reset();
            let overflows = OVERFLOWS.borrow(cs);
            overflows.set(overflows.get() + 1);
        }
    });
    // Compare 0 only wakes `sleep_until`; clear it so it does not fire again.
    rtc.events_compare[0].reset();
}
