//! Application messages between modules: the node's side of `publish`/`subscribe`.
//!
//! Instances register their subscriptions here (from host calls); the agent keeps the union of
//! their broker filters subscribed on its MQTT session and hands every application message it
//! receives to [`AppBus::deliver`], which queues it to each matching subscription's instance.
//! Publishing goes straight to the session's request queue. Topics on the broker are
//! `wf/v1/app/{namespace}/{relative}`; modules only ever see and name relative topics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};
use wasmfleet_proto::topic::{app_topic, filter_covers, filter_matches, parse_app_topic};

/// An application message for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    /// The subscription handle it matched.
    pub subscription: i32,
    /// Topic relative to the namespace.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Sends a message to the broker: `(topic, payload)`; false if it could not be queued.
pub type Publisher = Box<dyn Fn(String, Vec<u8>) -> bool + Send + Sync>;

struct Subscription {
    instance: u64,
    handle: i32,
    namespace: String,
    filter: String,
    tx: mpsc::Sender<AppMessage>,
}

#[derive(Default)]
struct State {
    subs: Vec<Subscription>,
    publisher: Option<Publisher>,
    next_instance: u64,
    /// Messages dropped because an instance's queue was full, for the agent to report.
    dropped: u64,
}

/// The node's application message router. Cheap to clone.
#[derive(Clone, Default)]
pub struct AppBus {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for AppBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBus").finish_non_exhaustive()
    }
}

impl AppBus {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where published messages go (the agent's MQTT session).
    pub fn set_publisher(&self, publisher: Publisher) {
        self.with(|s| s.publisher = Some(publisher));
    }

    /// A new id for an instance's subscriptions.
    pub fn instance_id(&self) -> u64 {
        self.with(|s| {
            s.next_instance += 1;
            s.next_instance
        })
    }

    /// Publishes `payload` on `relative` in `namespace`; false if it could not be queued.
    pub fn publish(&self, namespace: &str, relative: &str, payload: &[u8]) -> bool {
        let topic = app_topic(namespace, relative);
        self.with(|s| {
            s.publisher
                .as_ref()
                .is_some_and(|p| p(topic, payload.to_vec()))
        })
    }

    /// Registers subscription `handle` of `instance` to `filter` (relative, already checked
    /// against the instance's grants).
    pub fn subscribe(
        &self,
        instance: u64,
        handle: i32,
        namespace: &str,
        filter: &str,
        tx: mpsc::Sender<AppMessage>,
    ) {
        self.with(|s| {
            s.subs.push(Subscription {
                instance,
                handle,
                namespace: namespace.to_string(),
                filter: filter.to_string(),
                tx,
            })
        });
        self.changed.notify_one();
    }

    /// Removes subscription `handle` of `instance`; false if it did not exist.
    pub fn unsubscribe(&self, instance: u64, handle: i32) -> bool {
        let removed = self.with(|s| {
            let before = s.subs.len();
            s.subs
                .retain(|x| !(x.instance == instance && x.handle == handle));
            s.subs.len() != before
        });
        self.changed.notify_one();
        removed
    }

    /// Removes every subscription of `instance` (it ended).
    pub fn remove_instance(&self, instance: u64) {
        self.with(|s| s.subs.retain(|x| x.instance != instance));
        self.changed.notify_one();
    }

    /// The broker filters the node must be subscribed to: sorted, without duplicates, and
    /// without filters another one covers (a broker may deliver a message once per matching
    /// subscription of the client; each module subscription must see it once).
    pub fn broker_filters(&self) -> Vec<String> {
        let all: BTreeSet<String> = self.with(|s| {
            s.subs
                .iter()
                .map(|x| app_topic(&x.namespace, &x.filter))
                .collect()
        });
        all.iter()
            .filter(|f| !all.iter().any(|g| g != *f && filter_covers(g, f)))
            .cloned()
            .collect()
    }

    /// Resolves when subscriptions changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Queues a message received on broker topic `topic` to every matching subscription.
    /// Returns how many instances it was queued to.
    pub fn deliver(&self, topic: &str, payload: &[u8]) -> usize {
        let Some((namespace, relative)) = parse_app_topic(topic) else {
            return 0;
        };
        self.with(|s| {
            let mut queued = 0;
            let mut dropped = 0;
            for sub in s
                .subs
                .iter()
                .filter(|x| x.namespace == namespace && filter_matches(&x.filter, relative))
            {
                let msg = AppMessage {
                    subscription: sub.handle,
                    topic: relative.to_string(),
                    payload: payload.to_vec(),
                };
                match sub.tx.try_send(msg) {
                    Ok(()) => queued += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            s.dropped += dropped;
            queued
        })
    }

    /// Messages dropped on full instance queues since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.with(|s| std::mem::take(&mut s.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_namespace_and_filter_and_bounds_queues() {
        let bus = AppBus::default();
        let (tx, mut rx) = mpsc::channel(1);
        let id = bus.instance_id();
        bus.subscribe(id, 0, "default", "sensors/+/temp", tx);
        assert_eq!(bus.broker_filters(), ["wf/v1/app/default/sensors/+/temp"]);
        assert_eq!(bus.deliver("wf/v1/app/other/sensors/a/temp", b"1"), 0);
        assert_eq!(bus.deliver("wf/v1/app/default/sensors/a/hum", b"1"), 0);
        assert_eq!(bus.deliver("wf/v1/app/default/sensors/a/temp", b"21.5"), 1);
        assert_eq!(bus.deliver("wf/v1/app/default/sensors/b/temp", b"22"), 0);
        assert_eq!(bus.take_dropped(), 1, "the queue of one was full");
        let m = rx.try_recv().unwrap();
        assert_eq!((m.subscription, m.topic.as_str()), (0, "sensors/a/temp"));
        // A wider filter of another instance covers it: one broker subscription.
        let (tx2, _rx2) = mpsc::channel(1);
        bus.subscribe(id + 1, 0, "default", "sensors/#", tx2);
        assert_eq!(bus.broker_filters(), ["wf/v1/app/default/sensors/#"]);
        bus.remove_instance(id);
        bus.remove_instance(id + 1);
        assert!(bus.broker_filters().is_empty());
    }
}
