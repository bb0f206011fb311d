//! Host timers: the only way a module gets called back later (there is no blocking sleep
//! loop in an event module). A live timer also keeps the instance alive.

use crate::error::{Error, Result};
use crate::sys;

/// A timer handle; [`App::on_timer`](crate::App::on_timer) receives it when it fires.
///
/// It is `Copy` so an app can keep one and compare: `if timer == self.tick { ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timer(i32);

impl Timer {
    /// Fires every `ms` milliseconds, first after `ms`. `ms` 0 is `Err(InvalidArgument)`
    /// (to the host, period 0 would mean a one-shot timer).
    pub fn every(ms: u64) -> Result<Timer> {
        if ms == 0 {
            return Err(Error::InvalidArgument);
        }
        Timer::start(ms, ms)
    }

    /// Fires once, after `ms` milliseconds (0: as soon as the current handler returns).
    pub fn once(ms: u64) -> Result<Timer> {
        Timer::start(ms, 0)
    }

    /// Fires after `after_ms`, then every `period_ms` (0: only once). At most 32 timers.
    pub fn start(after_ms: u64, period_ms: u64) -> Result<Timer> {
        let (after, period) = (clamp(after_ms), clamp(period_ms));
        // SAFETY: plain integers.
        Error::check(unsafe { sys::timer_start(after, period) }).map(|h| Timer(h as i32))
    }

    /// Stops the timer. `Err(BadHandle)` if it was already cancelled, or was a one-shot
    /// timer that has fired.
    pub fn cancel(self) -> Result<()> {
        // SAFETY: plain integer.
        Error::check(unsafe { sys::timer_cancel(self.0) }).map(drop)
    }

    /// The host's handle number.
    pub fn id(self) -> i32 {
        self.0
    }

    /// The timer with handle `id`, as `on_timer` receives it.
    pub fn from_id(id: i32) -> Timer {
        Timer(id)
    }
}

/// Milliseconds as the ABI's `i64`; anything beyond is centuries away.
fn clamp(ms: u64) -> i64 {
    ms.min(i64::MAX as u64) as i64
}
