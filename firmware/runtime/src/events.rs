//! A bounded queue for GPIO edges, between a board's interrupt handler and its main loop.
//!
//! The ABI queues at most [`limits::EVENT_QUEUE`] edges per instance and drops an edge that
//! arrives at a full queue (the agent logs a warning). Edges come from interrupts while a
//! handler runs, so the queue lives with the board; this type gives it the ABI's bound
//! without heap (512 bytes). Messages arrive through the node's link and are bounded there.

use crate::abi::limits;

/// One reported edge: pin and new level.
pub type Edge = (u32, bool);

/// Up to [`limits::EVENT_QUEUE`] edges, oldest first, counting the ones dropped.
#[derive(Debug, Default)]
pub struct EdgeQueue {
    edges: heapless::Deque<Edge, { limits::EVENT_QUEUE }>,
    dropped: u32,
}

impl EdgeQueue {
    /// An empty queue (`const`: it may live in a `static`).
    pub const fn new() -> EdgeQueue {
        EdgeQueue {
            edges: heapless::Deque::new(),
            dropped: 0,
        }
    }

    /// Queues an edge; `false` (and counted) if the queue is full.
    pub fn push(&mut self, pin: u32, level: bool) -> bool {
        let queued = self.edges.push_back((pin, level)).is_ok();
        if !queued {
            self.dropped = self.dropped.saturating_add(1);
        }
        queued
    }

    /// The oldest edge.
    pub fn pop(&mut self) -> Option<Edge> {
        self.edges.pop_front()
    }

    /// Whether no edge waits.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Edges dropped since the last call (for the warning), resetting the count.
    pub fn take_dropped(&mut self) -> u32 {
        core::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut q = EdgeQueue::new();
        for i in 0..limits::EVENT_QUEUE as u32 {
            assert!(q.push(i, true));
        }
        assert!(!q.push(99, false));
        assert_eq!(q.take_dropped(), 1);
        assert_eq!(q.take_dropped(), 0);
        assert_eq!(q.pop(), Some((0, true)));
        assert!(q.push(99, false));
    }
}
