//! The controller as the async parts of the hub share it: one lock, and the queue its
//! publications leave by.
//!
//! Every change goes through [`ControllerHandle::change`], which enqueues the change's
//! publications before it releases the lock. Publications therefore leave in the order their
//! changes were committed, whoever made them (API handler, MQTT ingest, ticker); no caller has
//! to remember to do so.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{Controller, Publish};

/// Shared access to the single writer; clone freely.
#[derive(Debug, Clone)]
pub struct ControllerHandle {
    controller: Arc<Mutex<Controller>>,
    publish: mpsc::UnboundedSender<Publish>,
}

impl ControllerHandle {
    /// Shares `controller`; publications arrive on the returned receiver, in commit order.
    pub fn new(controller: Controller) -> (ControllerHandle, mpsc::UnboundedReceiver<Publish>) {
        let (publish, rx) = mpsc::unbounded_channel();
        let handle = ControllerHandle {
            controller: Arc::new(Mutex::new(controller)),
            publish,
        };
        (handle, rx)
    }

    fn lock(&self) -> MutexGuard<'_, Controller> {
        // A panic while holding the lock would be a bug; the state itself stays consistent
        // because every mutation commits before it is adopted.
        self.controller.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the fleet state.
    pub fn read<T>(&self, f: impl FnOnce(&Controller) -> T) -> T {
        f(&self.lock())
    }

    /// Changes the fleet state; `f` returns its result and the publications it caused, which
    /// are queued before the lock is released.
    pub fn change<T, E>(
        &self,
        f: impl FnOnce(&mut Controller) -> Result<(T, Vec<Publish>), E>,
    ) -> Result<T, E> {
        let mut controller = self.lock();
        let (value, publish) = f(&mut controller)?;
        for p in publish {
            // The receiver lives as long as the hub; after shutdown nothing needs sending.
            let _ = self.publish.send(p);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Config, ControllerError};
    use crate::store::SqliteStore;

    fn publish(topic: &str) -> Publish {
        Publish {
            topic: topic.into(),
            payload: vec![],
            retain: true,
        }
    }

    #[test]
    fn publications_are_queued_before_change_returns_and_only_on_success() {
        let store = Box::new(SqliteStore::in_memory().unwrap());
        let (handle, mut rx) =
            ControllerHandle::new(Controller::load(store, Config::default(), 0).unwrap());
        let out =
            handle.change(|_| Ok::<_, ControllerError>((7, vec![publish("a"), publish("b")])));
        assert_eq!(out.unwrap(), 7);
        let queued: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.topic)
            .collect();
        assert_eq!(
            queued,
            ["a", "b"],
            "queued in order, before the lock was released"
        );
        let failed =
            handle.change(|_| Err::<((), Vec<Publish>), _>(ControllerError::Invalid("no".into())));
        assert!(failed.is_err());
        assert!(rx.try_recv().is_err(), "a failed change publishes nothing");
    }
}
