//! Back-off delays. [`Reconnect`]: exponential (from [`backon`]) with full jitter, so a fleet
//! that lost its broker at the same moment does not come back at the same moment.
//! [`exponential`]: the deterministic kind, for decisions made by sans-IO logic (restart
//! back-off, subscription retries), where the same inputs must give the same answer.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rand::Rng;

/// Exponential backoff between `min` and `max`, each delay drawn uniformly from `[0, ceiling]`
/// (full jitter). `backon`'s own jitter adds up to 100 % on top of the ceiling, which would
/// break the `max` promise; so the ceiling comes from `backon` and the draw from here.
#[derive(Debug)]
pub struct Reconnect {
    min: Duration,
    max: Duration,
    ceilings: ExponentialBackoff,
}

impl Reconnect {
    /// Delays whose ceiling starts at `min` and doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Reconnect {
        Reconnect {
            min,
            max,
            ceilings: ceilings(min, max),
        }
    }

    /// The next delay to wait before trying again.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceilings.next().unwrap_or(self.max).min(self.max);
        ceiling.mul_f64(rand::rng().random::<f64>())
    }

    /// Starts over from `min` (after a success).
    pub fn reset(&mut self) {
        self.ceilings = ceilings(self.min, self.max);
    }
}

fn ceilings(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

pub use wasmfleet_node::exponential;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_and_caps() {
        let s = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let got: Vec<u64> = [0, 1, 5, 6, 31, 32, 40, u32::MAX]
            .iter()
            .map(|&n| exponential(s, max, n).as_secs())
            .collect();
        assert_eq!(got, [1, 2, 32, 60, 60, 60, 60, 60]);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_cap_and_reset() {
        let mut r = Reconnect::new(200 * MS, 30_000 * MS);
        let firsts: Vec<Duration> = (0..3).map(|_| r.next_delay()).collect();
        // Full jitter: never above the ceiling of its attempt (200, 400, 800 ms).
        for (d, cap) in firsts.iter().zip([200, 400, 800]) {
            assert!(*d <= cap * MS + MS, "{d:?} > {cap} ms");
        }
        let late: Vec<Duration> = (0..200).map(|_| r.next_delay()).collect();
        assert!(late.iter().all(|d| *d <= 30_001 * MS), "capped at max");
        assert!(
            late.iter().any(|d| *d > 10_000 * MS),
            "the ceiling grew well past the early attempts"
        );
        let distinct: std::collections::BTreeSet<_> = late.iter().collect();
        assert!(distinct.len() > 100, "jittered, not constant");
        r.reset();
        assert!(
            r.next_delay() <= 201 * MS,
            "back to the minimum after a reset"
        );
    }
}
