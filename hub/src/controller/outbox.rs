//! Publications waiting for the broker, coalesced by topic.
//!
//! Desired states are level-triggered: only the latest one per node matters. If the broker
//! link is slow (or reconnecting, and every node's state is republished at once), a newer
//! state for a topic replaces the queued one in place instead of queuing behind it, so the
//! queue holds at most one message per topic, however many changes happen, and a change never
//! overtakes an older one of the same topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::Publish;

/// Capacity an emptied queue may keep; above it, the queue hands its memory back.
const SHRINK_ABOVE: usize = 1024;

/// The queue between the controller and the MQTT publisher.
#[derive(Debug, Default)]
pub struct Outbox {
    inner: Mutex<Queue>,
    ready: Notify,
}

/// Topics are held once, shared by the map and the order (an apply of 50,000 nodes queues
/// 50,000 of them).
#[derive(Debug, Default)]
struct Queue {
    latest: HashMap<Arc<str>, Publish>,
    order: VecDeque<Arc<str>>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Queues `p`, replacing a queued publication of the same topic.
    pub fn push(&self, p: Publish) {
        let mut q = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queued) = q.latest.get_mut(p.topic.as_str()) {
            *queued = p;
        } else {
            let topic: Arc<str> = p.topic.as_str().into();
            q.latest.insert(topic.clone(), p);
            q.order.push_back(topic);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// The oldest queued topic's latest publication, if any.
    pub fn pop(&self) -> Option<Publish> {
        let mut q = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = q.order.pop_front()?;
        let p = q.latest.remove(&topic);
        if q.order.is_empty() && q.order.capacity() > SHRINK_ABOVE {
            // A republish to every node grew the queue to the fleet's size; it is empty again.
            q.latest.shrink_to_fit();
            q.order.shrink_to_fit();
        }
        p
    }

    /// Publications queued now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until something may have been queued since the last `pop` returned `None`.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, payload: u8) -> Publish {
        Publish {
            topic: topic.into(),
            payload: vec![payload].into(),
            retain: true,
        }
    }

    #[test]
    fn latest_per_topic_in_first_queued_order() {
        let o = Outbox::new();
        o.push(p("a", 1));
        o.push(p("b", 1));
        o.push(p("a", 2));
        o.push(p("a", 3));
        assert_eq!(o.len(), 2, "bounded by topics, not changes");
        assert_eq!(o.pop(), Some(p("a", 3)));
        assert_eq!(o.pop(), Some(p("b", 1)));
        assert_eq!(o.pop(), None);
        o.push(p("a", 4));
        assert_eq!(o.pop(), Some(p("a", 4)));
    }

    #[test]
    fn an_emptied_queue_hands_back_the_room_of_a_fleet_wide_republish() {
        let o = Outbox::new();
        for node in 0..10_000 {
            o.push(p(&format!("wf/v1/n/{node}/desired"), 1));
        }
        while o.pop().is_some() {}
        let q = o.inner.lock().unwrap();
        assert!(
            q.latest.capacity() <= SHRINK_ABOVE,
            "{}",
            q.latest.capacity()
        );
        assert!(q.order.capacity() <= SHRINK_ABOVE, "{}", q.order.capacity());
    }

    #[tokio::test]
    async fn a_push_wakes_the_publisher_even_before_it_waits() {
        let o = Outbox::new();
        o.push(p("a", 1));
        tokio::time::timeout(std::time::Duration::from_secs(1), o.wait())
            .await
            .expect("the permit of the earlier push");
    }
}
