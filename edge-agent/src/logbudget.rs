//! How much output one workload may ship, sans-IO.
//!
//! A guest that prints as fast as it can would otherwise be limited only by the agent's CPU:
//! measured at 4 KiB lines flat out, one such module drove the hub to 1.8 GiB. Each instance
//! gets two token buckets, lines per second and bytes per second, each holding a few seconds
//! of burst. Lines over budget are dropped and counted; the next line that fits is preceded by
//! one marker saying how many were dropped, written by the agent (stream `Agent`), so the
//! operator sees the gap and the guest cannot forge it. Time is a parameter.

use std::time::Duration;

/// The budget of one workload instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained lines per second.
    pub lines_per_sec: u32,
    /// Sustained bytes per second.
    pub bytes_per_sec: u32,
    /// Seconds of sustained rate a quiet workload may spend at once.
    pub burst_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            lines_per_sec: 100,
            bytes_per_sec: 64 * 1024,
            burst_secs: 5,
        }
    }
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Ship it.
    Ship,
    /// Ship a marker for the lines dropped since the last shipped line, then this line.
    ShipAfterDrops(Dropped),
    /// Over budget: drop it (counted).
    Drop,
}

/// Lines and bytes dropped since the last marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped {
    /// Lines dropped.
    pub lines: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Dropped {
    /// The marker text, e.g. `1200 lines (4.7 MiB) dropped: over the log budget of …`.
    pub fn marker(&self, limits: &Limits) -> String {
        format!(
            "{} lines ({} bytes) dropped: over the log budget of {} lines/s and {} bytes/s",
            self.lines, self.bytes, limits.lines_per_sec, limits.bytes_per_sec
        )
    }
}

/// Token buckets of one instance.
#[derive(Debug, Clone)]
pub struct LogBudget {
    limits: Limits,
    lines: f64,
    bytes: f64,
    last: Duration,
    dropped: Dropped,
}

impl LogBudget {
    /// A full budget at `now`.
    pub fn new(limits: Limits, now: Duration) -> LogBudget {
        LogBudget {
            limits,
            lines: Self::cap(limits.lines_per_sec, limits),
            bytes: Self::cap(limits.bytes_per_sec, limits),
            last: now,
            dropped: Dropped::default(),
        }
    }

    fn cap(rate: u32, limits: Limits) -> f64 {
        f64::from(rate) * f64::from(limits.burst_secs.max(1))
    }

    /// The limits this budget enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decides about a line of `len` bytes written at `now`.
    pub fn admit(&mut self, len: usize, now: Duration) -> Admit {
        self.refill(now);
        let len_f = len as f64;
        if self.lines < 1.0 || self.bytes < len_f {
            self.count_dropped(len);
            return Admit::Drop;
        }
        self.lines -= 1.0;
        self.bytes -= len_f;
        match self.take_dropped() {
            Some(d) => Admit::ShipAfterDrops(d),
            None => Admit::Ship,
        }
    }

    /// Counts a line lost elsewhere (e.g. the agent's queue was full) into the next marker.
    pub fn count_dropped(&mut self, len: usize) {
        self.dropped.lines += 1;
        self.dropped.bytes += len as u64;
    }

    /// Puts back drops whose marker could not be delivered, for the next marker.
    pub fn restore(&mut self, d: Dropped) {
        self.dropped.lines += d.lines;
        self.dropped.bytes += d.bytes;
    }

    /// Drops not reported yet, if any (for a last marker when the instance ends).
    pub fn take_dropped(&mut self) -> Option<Dropped> {
        let d = std::mem::take(&mut self.dropped);
        (d.lines > 0).then_some(d)
    }

    fn refill(&mut self, now: Duration) {
        let secs = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let l = self.limits;
        self.lines =
            (self.lines + secs * f64::from(l.lines_per_sec)).min(Self::cap(l.lines_per_sec, l));
        self.bytes =
            (self.bytes + secs * f64::from(l.bytes_per_sec)).min(Self::cap(l.bytes_per_sec, l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        lines_per_sec: 10,
        bytes_per_sec: 1000,
        burst_secs: 2,
    };
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_quiet_workload_ships_everything() {
        let mut b = LogBudget::new(LIMITS, Duration::ZERO);
        for i in 0..100u64 {
            assert_eq!(
                b.admit(20, Duration::from_millis(i * 200)),
                Admit::Ship,
                "line {i}"
            );
        }
        assert_eq!(b.take_dropped(), None);
    }

    #[test]
    fn a_flood_is_cut_to_burst_plus_rate_and_the_gap_is_reported_exactly() {
        let mut b = LogBudget::new(LIMITS, Duration::ZERO);
        // 10,000 short lines within one second.
        let mut shipped = 0u64;
        let mut reported = 0u64;
        for i in 0..10_000u64 {
            match b.admit(5, Duration::from_micros(i * 100)) {
                Admit::Drop => {}
                Admit::Ship => shipped += 1,
                Admit::ShipAfterDrops(d) => {
                    shipped += 1;
                    reported += d.lines;
                    assert_eq!(d.bytes, d.lines * 5);
                }
            }
        }
        // Burst of 20 lines plus 10 lines/s over the one second.
        assert!((20..=31).contains(&shipped), "{shipped}");
        // After a pause, the next line carries the rest: every drop is reported exactly once.
        match b.admit(5, 3000 * MS) {
            Admit::ShipAfterDrops(d) => {
                reported += d.lines;
                assert!(d.marker(&LIMITS).starts_with(&format!("{} lines", d.lines)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reported, 10_000 - shipped);
        assert_eq!(b.admit(5, 3001 * MS), Admit::Ship, "reported once");
    }

    #[test]
    fn the_byte_budget_bounds_long_lines() {
        let mut b = LogBudget::new(LIMITS, Duration::ZERO);
        // 4 KiB lines never fit a 2000-byte bucket: all dropped, none shipped.
        for i in 0..10u64 {
            assert_eq!(b.admit(4096, Duration::from_millis(i * 100)), Admit::Drop);
        }
        assert_eq!(
            b.admit(100, 1000 * MS),
            Admit::ShipAfterDrops(Dropped {
                lines: 10,
                bytes: 40960
            })
        );
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut b = LogBudget::new(LIMITS, 10_000 * MS);
        for _ in 0..20 {
            assert_ne!(b.admit(1, 10_000 * MS), Admit::Drop);
        }
        assert_eq!(b.admit(1, 5_000 * MS), Admit::Drop);
        b.count_dropped(7);
        assert_eq!(b.take_dropped(), Some(Dropped { lines: 2, bytes: 8 }));
    }
}
