//! Blocking delays for drivers (`embedded_hal::delay::DelayNs`), e.g. a sensor's conversion
//! time. The host pauses only this instance. Keep them short: events queue meanwhile.

use crate::sys;

/// The host's `delay_ns`, as an embedded-hal delay provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delay;

/// The host caps one `delay_ns` call at 1 s; longer delays are split.
const MAX_NS_PER_CALL: u64 = 1_000_000_000;

/// Pauses for at least `ns` nanoseconds.
pub fn delay_ns(mut ns: u64) {
    loop {
        let step = ns.min(MAX_NS_PER_CALL);
        // SAFETY: plain integer.
        unsafe { sys::delay_ns(step as i64) };
        ns -= step;
        if ns == 0 {
            break;
        }
    }
}

impl embedded_hal::delay::DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        delay_ns(ns.into())
    }

    /// One host call instead of the trait's default loop of `delay_ns` calls.
    fn delay_us(&mut self, us: u32) {
        delay_ns(u64::from(us) * 1_000)
    }

    /// One host call (per second) instead of the trait's default loop.
    fn delay_ms(&mut self, ms: u32) {
        delay_ns(u64::from(ms) * 1_000_000)
    }
}
