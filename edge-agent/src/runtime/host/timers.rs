//! An instance's timers, sans-IO: handles, deadlines and periods; the instance's event loop
//! asks when the next one is due and which are due now. Time is a parameter.

use std::collections::BTreeMap;
use std::time::Duration;

use wasmfleet_common::abi::{errno, limits};

#[derive(Debug, Clone, Copy)]
struct Timer {
    due: Duration,
    period: Option<Duration>,
}

/// The timers of one instance.
#[derive(Debug, Default)]
pub struct Timers {
    timers: BTreeMap<i32, Timer>,
    next: i32,
}

impl Timers {
    /// Starts a timer due `after_ms` after `now`, then every `period_ms` (0: once). Returns the
    /// handle, or an ABI error code.
    pub fn start(&mut self, now: Duration, after_ms: i64, period_ms: i64) -> i32 {
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
        let ms = |v: i64| Duration::from_millis(v as u64);
        self.timers.insert(
            handle,
            Timer {
                due: now + ms(after_ms),
                period: (period_ms > 0).then(|| ms(period_ms)),
            },
        );
        handle
    }

    /// Cancels `handle`: 0, or `BAD_HANDLE`.
    pub fn cancel(&mut self, handle: i32) -> i32 {
        match self.timers.remove(&handle) {
            Some(_) => 0,
            None => errno::BAD_HANDLE,
        }
    }

    /// Whether no timer is left.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.timers.values().map(|t| t.due).min()
    }

    /// The earliest timer due at `now`, rescheduled (periodic: from its due time, skipping
    /// missed periods rather than firing a burst) or closed (one-shot).
    pub fn pop_due(&mut self, now: Duration) -> Option<i32> {
        let (&handle, timer) = self
            .timers
            .iter_mut()
            .filter(|(_, t)| t.due <= now)
            .min_by_key(|(_, t)| t.due)?;
        match timer.period {
            Some(p) => {
                timer.due += p;
                if timer.due <= now {
                    let missed = (now - timer.due).as_nanos() / p.as_nanos() + 1;
                    timer.due += p * missed as u32;
                }
            }
            None => {
                self.timers.remove(&handle);
            }
        }
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn periodic_and_one_shot_timers() {
        let mut t = Timers::default();
        let every = t.start(Duration::ZERO, 10, 10);
        let once = t.start(Duration::ZERO, 15, 0);
        assert_eq!(t.next_due(), Some(10 * MS));
        assert_eq!(t.pop_due(9 * MS), None);
        assert_eq!(t.pop_due(10 * MS), Some(every));
        assert_eq!(t.pop_due(16 * MS), Some(once));
        assert_eq!(
            t.pop_due(16 * MS),
            None,
            "one-shot closed, periodic due at 20"
        );
        assert_eq!(t.cancel(once), errno::BAD_HANDLE);
        // A stalled instance does not get a burst of missed periods.
        assert_eq!(t.pop_due(95 * MS), Some(every));
        assert_eq!(t.next_due(), Some(100 * MS));
        assert_eq!(t.cancel(every), 0);
        assert!(t.is_empty());
        assert_eq!(t.start(Duration::ZERO, -1, 0), errno::INVALID_ARGUMENT);
    }

    #[test]
    fn timer_count_is_bounded() {
        let mut t = Timers::default();
        for _ in 0..limits::TIMERS {
            assert!(t.start(Duration::ZERO, 1, 1) >= 0);
        }
        assert_eq!(t.start(Duration::ZERO, 1, 1), errno::TOO_MANY);
    }
}
