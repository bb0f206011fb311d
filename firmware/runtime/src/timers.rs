//! An instance's timers, sans-IO: handles, deadlines and periods in the platform's
//! milliseconds. Mirrors the Linux agent's `runtime/host/timers.rs`: at most
//! [`limits::TIMERS`], handles never reused, a periodic timer that fell behind fires once.

use alloc::vec::Vec;

use crate::abi::{errno, limits};

#[derive(Debug, Clone, Copy)]
struct Timer {
    handle: i32,
    due: u64,
    /// 0: one-shot.
    period: u64,
}

/// The timers of one instance (a vector: at most 32, usually one or two).
#[derive(Debug, Default)]
pub struct Timers {
    timers: Vec<Timer>,
    next: i32,
}

impl Timers {
    /// Starts a timer due `after_ms` after `now`, then every `period_ms` (0: once). Returns the
    /// handle, or an ABI error code.
    pub fn start(&mut self, now: u64, after_ms: i64, period_ms: i64) -> i32 {
        if after_ms < 0 || period_ms < 0 {
            return errno::INVALID_ARGUMENT;
        }
        if self.timers.len() >= limits::TIMERS {
            return errno::TOO_MANY;
        }
        let handle = self.next;
        // Handles are never reused in an instance's life (a guest may keep old ones).
        let Some(next) = self.next.checked_add(1) else {
            return errno::TOO_MANY;
        };
        self.next = next;
        self.timers.push(Timer {
            handle,
            due: now.saturating_add(after_ms as u64),
            period: period_ms as u64,
        });
        handle
    }

    /// Cancels `handle`: 0, or `BAD_HANDLE`.
    pub fn cancel(&mut self, handle: i32) -> i32 {
        match self.timers.iter().position(|t| t.handle == handle) {
            Some(i) => {
                self.timers.remove(i);
                0
            }
            None => errno::BAD_HANDLE,
        }
    }

    /// Whether no timer is left.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Closes every timer (the instance ended).
    pub fn clear(&mut self) {
        self.timers = Vec::new();
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<u64> {
        self.timers.iter().map(|t| t.due).min()
    }

    /// The earliest timer due at `now` (the oldest handle first among equals), rescheduled
    /// (periodic: from its due time, skipping missed periods rather than firing a burst) or
    /// closed (one-shot).
    pub fn pop_due(&mut self, now: u64) -> Option<i32> {
        let i = (0..self.timers.len())
            .filter(|&i| self.timers[i].due <= now)
            .min_by_key(|&i| (self.timers[i].due, self.timers[i].handle))?;
        let timer = &mut self.timers[i];
        let handle = timer.handle;
        match timer.period {
            0 => {
                self.timers.remove(i);
            }
            p => {
                timer.due = timer.due.saturating_add(p);
                if timer.due <= now {
                    let missed = (now - timer.due) / p + 1;
                    timer.due = timer.due.saturating_add(p.saturating_mul(missed));
                }
            }
        }
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_and_one_shot_timers() {
        let mut t = Timers::default();
        let every = t.start(0, 10, 10);
        let once = t.start(0, 15, 0);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(9), None);
        assert_eq!(t.pop_due(10), Some(every));
        assert_eq!(t.pop_due(16), Some(once));
        assert_eq!(t.pop_due(16), None, "one-shot closed, periodic due at 20");
        assert_eq!(t.cancel(once), errno::BAD_HANDLE);
        // A stalled instance does not get a burst of missed periods.
        assert_eq!(t.pop_due(95), Some(every));
        assert_eq!(t.next_due(), Some(100));
        assert_eq!(t.cancel(every), 0);
        assert!(t.is_empty());
        assert_eq!(t.start(0, -1, 0), errno::INVALID_ARGUMENT);
        assert_eq!(t.start(0, 0, -1), errno::INVALID_ARGUMENT);
    }

    #[test]
    fn timer_count_is_bounded_and_handles_not_reused() {
        let mut t = Timers::default();
        for _ in 0..limits::TIMERS {
            assert!(t.start(0, 1, 1) >= 0);
        }
        assert_eq!(t.start(0, 1, 1), errno::TOO_MANY);
        assert_eq!(t.cancel(0), 0);
        assert_eq!(t.start(0, 1, 1), limits::TIMERS as i32);
    }

    #[test]
    fn huge_delays_saturate_instead_of_overflowing() {
        let mut t = Timers::default();
        let h = t.start(u64::MAX - 1, i64::MAX, i64::MAX);
        assert_eq!(t.next_due(), Some(u64::MAX));
        assert_eq!(t.pop_due(u64::MAX), Some(h));
    }
}
