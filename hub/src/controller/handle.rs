//! The controller as the async parts of the hub share it.
//!
//! Every change goes through [`ControllerHandle::change`], which runs on tokio's blocking
//! pool (the controller writes SQLite and schedules the fleet: neither belongs on an async
//! worker) and queues the change's publications in the [`Outbox`] before it releases the
//! lock. Publications therefore leave in the order their changes were committed, whoever made
//! them (API handler, MQTT ingest, ticker).
//!
//! Reads never take the controller's lock: [`ControllerHandle::snapshot`] returns the latest
//! [`FleetSnapshot`]. A change made through the API refreshes it before returning (a user
//! reads their own writes); changes from the fleet (statuses, presence) refresh it at most
//! every [`SNAPSHOT_EVERY`] (or four times the last rebuild's cost, whichever is longer, so a
//! large fleet spends at most a fifth of a core on snapshots), or when
//! [`ControllerHandle::refresh`] is called.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{Controller, FleetSnapshot, Outbox, Publish};

/// Longest a snapshot lags the controller after changes from the fleet (on a fleet whose
/// snapshot takes under 2.5 ms to build). It is most of the time between a node reporting
/// Running and `wasmfleet get` showing it.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(10);

/// A snapshot, when the last paced (fleet-driven) refresh was, and what a rebuild costs.
/// Forced refreshes (a user's own change) do not count toward the pace: the first report
/// after an apply, typically a node saying Running milliseconds later, is shown at once.
type Published = (Arc<FleetSnapshot>, Instant, Duration);

/// Shared access to the single writer; clone freely.
#[derive(Debug, Clone)]
pub struct ControllerHandle {
    controller: Arc<Mutex<Controller>>,
    outbox: Arc<Outbox>,
    snapshot: Arc<RwLock<Published>>,
    /// A change is not in the snapshot yet.
    stale: Arc<AtomicBool>,
}

/// Whether a change must be visible to readers when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Refresh the snapshot now (changes a user asked for).
    Now,
    /// Refresh within [`SNAPSHOT_EVERY`] (changes from the fleet).
    Soon,
}

impl ControllerHandle {
    /// Shares `controller`; its publications queue in the returned outbox.
    pub fn new(controller: Controller) -> (ControllerHandle, Arc<Outbox>) {
        let snapshot = Arc::new(controller.snapshot());
        let outbox = Arc::new(Outbox::new());
        let handle = ControllerHandle {
            controller: Arc::new(Mutex::new(controller)),
            outbox: outbox.clone(),
            snapshot: Arc::new(RwLock::new((snapshot, Instant::now(), Duration::ZERO))),
            stale: Arc::new(AtomicBool::new(false)),
        };
        (handle, outbox)
    }

    fn lock(&self) -> MutexGuard<'_, Controller> {
        // A panic while holding the lock would be a bug; the state itself stays consistent
        // because every mutation commits before it is adopted.
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest snapshot of the fleet state (no lock on the controller).
    pub fn snapshot(&self) -> Arc<FleetSnapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Changes the fleet state on the blocking pool; `f` returns its result and the
    /// publications it caused, which are queued before the lock is released.
    pub async fn change<T, E>(
        &self,
        visibility: Visibility,
        f: impl FnOnce(&mut Controller) -> Result<(T, Vec<Publish>), E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.change_blocking(visibility, f)).await {
            Ok(result) => result,
            // The closure panicked: a bug, surfaced where it happened.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// [`ControllerHandle::change`] for callers already on a blocking thread (and tests).
    pub fn change_blocking<T, E>(
        &self,
        visibility: Visibility,
        f: impl FnOnce(&mut Controller) -> Result<(T, Vec<Publish>), E>,
    ) -> Result<T, E> {
        let mut controller = self.lock();
        let (value, publish) = f(&mut controller)?;
        for p in publish {
            self.outbox.push(p);
        }
        self.refresh_locked(&controller, visibility == Visibility::Now);
        Ok(value)
    }

    /// Brings the snapshot up to date if it is stale.
    pub fn refresh(&self) {
        let controller = self.lock();
        self.refresh_locked(&controller, true);
    }

    /// Brings the snapshot up to date if it is stale and a refresh is due (the periodic
    /// refresher: it keeps to the pace of [`SNAPSHOT_EVERY`] and the rebuild cost).
    pub fn refresh_if_due(&self) {
        let controller = self.lock();
        self.refresh_locked(&controller, false);
    }

    /// Whether a change awaits a refresh (cheap: no lock; the periodic refresher asks first).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    fn refresh_locked(&self, controller: &Controller, force: bool) {
        let (version, at, cost) = {
            let s = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
            (s.0.version, s.1, s.2)
        };
        if version == controller.version() {
            return;
        }
        if !force && at.elapsed() < SNAPSHOT_EVERY.max(cost * 4) {
            self.stale.store(true, Ordering::Relaxed);
            return;
        }
        let started = Instant::now();
        let fresh = Arc::new(controller.snapshot());
        self.stale.store(false, Ordering::Relaxed);
        let paced_at = if force { at } else { Instant::now() };
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = (fresh, paced_at, started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Config, ControllerError};
    use crate::model::deployment::tests::spec;
    use crate::store::SqliteStore;

    fn publish(topic: &str) -> Publish {
        Publish {
            topic: topic.into(),
            payload: Default::default(),
            retain: true,
        }
    }

    fn handle() -> (ControllerHandle, Arc<Outbox>) {
        let store = Box::new(SqliteStore::in_memory().unwrap());
        ControllerHandle::new(Controller::load(store, Config::default(), 0).unwrap())
    }

    #[test]
    fn publications_are_queued_before_change_returns_and_only_on_success() {
        let (handle, outbox) = handle();
        let out = handle.change_blocking(Visibility::Now, |_| {
            Ok::<_, ControllerError>((7, vec![publish("a"), publish("b")]))
        });
        assert_eq!(out.unwrap(), 7);
        let queued: Vec<String> = std::iter::from_fn(|| outbox.pop())
            .map(|p| p.topic)
            .collect();
        assert_eq!(
            queued,
            ["a", "b"],
            "queued in order, before the lock was released"
        );
        let failed = handle.change_blocking(Visibility::Now, |_| {
            Err::<((), Vec<Publish>), _>(ControllerError::Invalid("no".into()))
        });
        assert!(failed.is_err());
        assert!(outbox.is_empty(), "a failed change publishes nothing");
    }

    #[test]
    fn readers_see_user_changes_at_once_and_fleet_changes_soon() {
        let (handle, _) = handle();
        handle
            .change_blocking(Visibility::Now, |c| {
                c.apply("hello", spec(1), 1).map(|(_, _, p)| ((), p))
            })
            .unwrap();
        assert_eq!(handle.snapshot().deployments.len(), 1, "read your writes");
        // A change from the fleet right after: not necessarily visible yet...
        handle
            .change_blocking(Visibility::Soon, |c| c.delete("hello", 2).map(|p| ((), p)))
            .unwrap();
        // ...but after a refresh it is.
        handle.refresh();
        assert!(handle.snapshot().deployments.is_empty());
    }

    #[tokio::test]
    async fn a_change_holds_no_async_worker_and_a_read_needs_no_lock() {
        let (handle, _) = handle();
        let guard = handle.lock();
        // The controller is locked (as during a long reconcile): reading still answers.
        let snap = handle.snapshot();
        assert!(snap.deployments.is_empty());
        drop(guard);
        let n = handle
            .change(Visibility::Now, |c| {
                Ok::<_, ControllerError>((c.version(), vec![]))
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
