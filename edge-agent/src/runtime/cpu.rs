//! CPU limits: a guest gets at most its `resources.cpu` share of one core, and a guest without
//! one still yields to its neighbours at every epoch tick.
//!
//! The time a guest spends executing WebAssembly is measured exactly with wasmtime's call
//! hooks (host calls such as `sleep` do not count) and charged to a [`Throttle`] at each epoch
//! tick. A guest over its share is suspended (its future sleeps) until it is back within it:
//! throttled, as CFS quotas throttle a container, never killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most CPU time a guest may bank while idle, as a span of its share: after sleeping it may
/// run this long at full speed before throttling starts (CFS's period is 100 ms too).
pub const BURST_WINDOW: Duration = Duration::from_millis(100);

/// The pure accounting: a token bucket of CPU time refilled at `millis / 1000` seconds per
/// second, holding at most [`BURST_WINDOW`] worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    millis: u64,
    /// CPU time the guest may still use, in nanoseconds; negative while in debt.
    credit_ns: i128,
    /// When the bucket was last refilled (same origin as `now`).
    refilled_at: Duration,
}

impl Throttle {
    /// A full bucket for `millis` millicores at time `now`.
    pub fn new(millis: u32, now: Duration) -> Throttle {
        let millis = u64::from(millis.max(1));
        Throttle {
            millis,
            credit_ns: Self::cap_ns(millis),
            refilled_at: now,
        }
    }

    fn cap_ns(millis: u64) -> i128 {
        BURST_WINDOW.as_nanos() as i128 * i128::from(millis) / 1000
    }

    /// Charges `ran` of CPU time at `now`; returns how long the guest must pause to get back
    /// within its share, if it is over.
    pub fn charge(&mut self, ran: Duration, now: Duration) -> Option<Duration> {
        let elapsed = now.saturating_sub(self.refilled_at).as_nanos() as i128;
        self.refilled_at = now.max(self.refilled_at);
        self.credit_ns = (self.credit_ns + elapsed * i128::from(self.millis) / 1000)
            .min(Self::cap_ns(self.millis));
        self.credit_ns -= ran.as_nanos() as i128;
        (self.credit_ns < 0).then(|| {
            let ns = -self.credit_ns * 1000 / i128::from(self.millis);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        })
    }
}

/// Per-instance meter between the call hooks, the epoch callback and the resume of a paused
/// guest (which happens in a future, outside the store): when the guest started executing
/// wasm, as nanoseconds since `origin` plus one (0: not executing).
#[derive(Debug, Clone)]
pub struct Meter {
    origin: Instant,
    running_since: Arc<AtomicU64>,
    /// CPU time measured and not yet charged.
    pending: Duration,
    /// CPU time the guest used in total (measured only with a limit: the runtime installs the
    /// call hooks that feed [`Meter::enter`]/[`Meter::leave`] only then).
    pub used: Duration,
    throttle: Option<Throttle>,
}

impl Meter {
    /// A meter for a guest limited to `cpu_millis` (none: measured, never throttled).
    pub fn new(cpu_millis: Option<u32>) -> Meter {
        Meter {
            origin: Instant::now(),
            running_since: Arc::new(AtomicU64::new(0)),
            pending: Duration::ZERO,
            used: Duration::ZERO,
            throttle: cpu_millis.map(|m| Throttle::new(m, Duration::ZERO)),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The guest starts or resumes executing wasm.
    pub fn enter(&mut self) {
        mark(&self.running_since, self.origin);
    }

    /// The guest stops executing wasm (calls the host, or returns).
    pub fn leave(&mut self) {
        let since = self.running_since.swap(0, Ordering::Relaxed);
        if since > 0 {
            let ran = self.now().saturating_sub(Duration::from_nanos(since - 1));
            self.pending += ran;
            self.used += ran;
        }
    }

    /// At an epoch tick: charges what ran since the last tick and says how long to pause
    /// (zero: just yield). The returned future resumes the meter when it completes.
    pub fn tick(&mut self) -> (Duration, impl Future<Output = ()> + Send + 'static) {
        self.leave();
        let now = self.now();
        let ran = std::mem::take(&mut self.pending);
        let pause = self
            .throttle
            .as_mut()
            .and_then(|t| t.charge(ran, now))
            .unwrap_or_default();
        let (running_since, origin) = (self.running_since.clone(), self.origin);
        let resume = async move {
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
            mark(&running_since, origin);
        };
        (pause, resume)
    }
}

fn mark(running_since: &AtomicU64, origin: Instant) {
    let ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
    running_since.store(ns + 1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_busy_guest_gets_its_share_over_time() {
        // 200m: a guest running flat out in 10 ms slices, pausing when told to.
        let mut t = Throttle::new(200, Duration::ZERO);
        let (mut now, mut ran_total) = (Duration::ZERO, Duration::ZERO);
        while now < Duration::from_secs(10) {
            now += 10 * MS;
            ran_total += 10 * MS;
            if let Some(pause) = t.charge(10 * MS, now) {
                now += pause;
            }
        }
        let share = ran_total.as_secs_f64() / now.as_secs_f64();
        assert!((0.19..0.22).contains(&share), "share {share}");
    }

    #[test]
    fn an_idle_guest_banks_at_most_one_window() {
        let mut t = Throttle::new(500, Duration::ZERO);
        // Idle for a minute, then 50 ms of work: within the 50 ms bank.
        assert_eq!(t.charge(50 * MS, Duration::from_secs(60)), None);
        // 10 ms more at once: over by 10 ms, which at 500m takes 20 ms to earn back.
        assert_eq!(t.charge(10 * MS, Duration::from_secs(60)), Some(20 * MS));
    }

    #[test]
    fn a_full_core_is_never_paused() {
        let mut t = Throttle::new(1000, Duration::ZERO);
        let mut now = Duration::ZERO;
        for _ in 0..1000 {
            now += 10 * MS;
            assert_eq!(t.charge(10 * MS, now), None);
        }
    }
}
