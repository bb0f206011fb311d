//! Where the hub's MQTT link leaves what the fleet sends, without ever waiting.
//!
//! The link's event loop must keep reading its socket (PINGREQs and PUBACKs flow through it,
//! and a subscriber that stops reading makes the broker queue for it): so nothing it hands
//! over may block. Three kinds of traffic, three bounds:
//! - **Presence and status** are level-triggered: only the latest per node matters. They
//!   coalesce per node in [`Inbox::fleet`] (one entry per node however many arrive), drained
//!   in batches by the ingest task. Bounded by the number of nodes.
//! - **Logs** are best effort: a queue bounded by bytes ([`LOG_QUEUE_BYTES`]); when full, batches
//!   are dropped and counted.
//! - **Blob chunk requests** are retried by nodes after a timeout. Per-node ones (`blob-req`):
//!   a bounded queue; when full, requests are dropped and counted. Fan-out ones (`blob-want`)
//!   coalesce per chunk in [`crate::blob_fanout::FanOut`] (bounded by pending chunks, dropped
//!   and counted beyond).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};
use wasmfleet_proto::{BlobRequest, Heartbeat, NodeStatus, Presence};

use crate::blob_fanout::{FanOutQueue, Want};
use crate::reconcile::liveness::{Flip, Liveness};

/// Bytes of undelivered log batches the hub holds before it drops new ones.
pub const LOG_QUEUE_BYTES: usize = 8 << 20;
/// Chunk requests waiting for a blob server before new ones are dropped.
pub const BLOB_QUEUE: usize = 1024;
/// Reports (a presence, a status or a liveness flip: up to three per node) waiting for ingest
/// before reports of further nodes are dropped (a client inventing node names must not grow
/// the hub without bound). Room for all three of every node the hub keeps: a 100,000-node
/// connect storm sends a presence and a status per node within seconds.
pub const FLEET_PENDING: usize = 3 * crate::controller::MAX_NODES;

/// A fleet message for the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetMessage {
    /// The link (re)connected: republish desired states.
    Connected,
    /// A node's presence.
    Presence(String, Presence),
    /// A node's status.
    Status(String, NodeStatus),
    /// A node went silent, or was heard again after silence.
    Liveness(Flip),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Presence,
    Status,
    Liveness,
}

#[derive(Debug, Default)]
struct Fleet {
    connected: bool,
    order: VecDeque<(String, Kind)>,
    presence: HashMap<String, Presence>,
    status: HashMap<String, NodeStatus>,
    liveness: HashMap<String, Flip>,
}

/// Slots an emptied inbox table keeps; beyond, its memory goes back (see
/// [`Fleet::release_storm_capacity`]).
const KEEP_SLOTS: usize = 1024;

impl Fleet {
    /// An emptied table keeps the size of the largest burst it held: a connect storm of 5,000
    /// nodes left 460 B a node of empty slots behind (in a heap profile of the hub). Drained,
    /// a table holding more than [`KEEP_SLOTS`] gives them back.
    fn release_storm_capacity(&mut self) {
        if self.order.capacity() > KEEP_SLOTS {
            self.order = VecDeque::new();
        }
        if self.presence.capacity() > KEEP_SLOTS {
            self.presence = HashMap::new();
        }
        if self.status.capacity() > KEEP_SLOTS {
            self.status = HashMap::new();
        }
        if self.liveness.capacity() > KEEP_SLOTS {
            self.liveness = HashMap::new();
        }
    }
}

/// Counters of what was dropped, for the operator's log.
#[derive(Debug, Default)]
pub struct Drops {
    /// Log batches dropped because the log queue was full.
    pub log_batches: AtomicU64,
    /// Chunk requests dropped because the blob servers were busy.
    pub blob_requests: AtomicU64,
    /// Presence or status reports dropped because too many nodes were pending.
    pub fleet_reports: AtomicU64,
}

/// Coalesced presence and status, waiting for the ingest task.
#[derive(Debug, Default)]
pub struct FleetInbox {
    inner: Mutex<Fleet>,
    ready: Notify,
}

impl FleetInbox {
    /// Queues a report; false if it was dropped because too many are pending.
    fn push(
        &self,
        node: String,
        kind: Kind,
        drops: &Drops,
        put: impl FnOnce(&mut Fleet, String),
    ) -> bool {
        let mut f = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = match kind {
            Kind::Presence => f.presence.contains_key(&node),
            Kind::Status => f.status.contains_key(&node),
            Kind::Liveness => f.liveness.contains_key(&node),
        };
        if !pending {
            if f.order.len() >= FLEET_PENDING {
                drops.fleet_reports.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            f.order.push_back((node.clone(), kind));
        }
        put(&mut f, node);
        drop(f);
        self.ready.notify_one();
        true
    }

    fn connected(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connected = true;
        self.ready.notify_one();
    }

    /// Everything pending, oldest first (a reconnect first of all), leaving the inbox empty.
    pub fn drain(&self) -> Vec<FleetMessage> {
        let mut f = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(f.order.len() + 1);
        if std::mem::take(&mut f.connected) {
            out.push(FleetMessage::Connected);
        }
        while let Some((node, kind)) = f.order.pop_front() {
            match kind {
                Kind::Presence => {
                    if let Some(p) = f.presence.remove(&node) {
                        out.push(FleetMessage::Presence(node, p));
                    }
                }
                Kind::Status => {
                    if let Some(s) = f.status.remove(&node) {
                        out.push(FleetMessage::Status(node, s));
                    }
                }
                Kind::Liveness => {
                    if let Some(flip) = f.liveness.remove(&node) {
                        out.push(FleetMessage::Liveness(flip));
                    }
                }
            }
        }
        f.release_storm_capacity();
        out
    }

    /// Waits until something may have arrived since the last drain.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }
}

/// The sending side of the hub's inbound traffic; the link's router holds it.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// Presence and status.
    pub fleet: Arc<FleetInbox>,
    logs: mpsc::UnboundedSender<(String, Vec<u8>)>,
    log_bytes: Arc<AtomicUsize>,
    blobs: mpsc::Sender<(String, BlobRequest)>,
    fan_out: Arc<FanOutQueue>,
    /// What was dropped.
    pub drops: Arc<Drops>,
    /// When each node was last heard; beats stop here, only flips go on to the controller.
    pub liveness: Arc<Mutex<Liveness>>,
}

/// The receiving side of log batches: `(node, encoded LogBatch)`.
#[derive(Debug)]
pub struct LogQueue {
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    bytes: Arc<AtomicUsize>,
}

impl LogQueue {
    /// The next batch, or `None` once the link is gone.
    pub async fn recv(&mut self) -> Option<(String, Vec<u8>)> {
        let item = self.rx.recv().await?;
        self.bytes.fetch_sub(item.1.len(), Ordering::Relaxed);
        Some(item)
    }

    /// A batch that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<(String, Vec<u8>)> {
        let item = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(item.1.len(), Ordering::Relaxed);
        Some(item)
    }
}

/// The receiving side of chunk requests: per node `(node, request)` to answer on the node's
/// topic, and the fan-out asks to publish on blob topics.
#[derive(Debug)]
pub struct BlobQueue {
    /// Requests on `blob-req`.
    pub direct: mpsc::Receiver<(String, BlobRequest)>,
    /// Asks on `blob-want`, coalesced per chunk.
    pub fan_out: Arc<FanOutQueue>,
}

impl Inbox {
    /// An inbox and the receiving ends of its queues.
    pub fn new() -> (Inbox, LogQueue, BlobQueue) {
        let (logs, log_rx) = mpsc::unbounded_channel();
        let (blobs, blob_rx) = mpsc::channel(BLOB_QUEUE);
        let log_bytes = Arc::new(AtomicUsize::new(0));
        let fan_out = Arc::<FanOutQueue>::default();
        let inbox = Inbox {
            fleet: Arc::default(),
            logs,
            log_bytes: log_bytes.clone(),
            blobs,
            fan_out: fan_out.clone(),
            drops: Arc::default(),
            liveness: Arc::default(),
        };
        (
            inbox,
            LogQueue {
                rx: log_rx,
                bytes: log_bytes,
            },
            BlobQueue {
                direct: blob_rx,
                fan_out,
            },
        )
    }

    /// The link (re)connected: nodes get a full heartbeat deadline from now.
    pub fn connected(&self, now_ms: u64) {
        self.with_liveness(|l| l.resume(now_ms));
        self.fleet.connected();
    }

    /// The link dropped: the hub hears nobody, so nobody is declared silent meanwhile.
    pub fn disconnected(&self) {
        self.with_liveness(Liveness::pause);
    }

    fn with_liveness<T>(&self, f: impl FnOnce(&mut Liveness) -> T) -> T {
        f(&mut self.liveness.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on the liveness table and queues the flips it made *before* releasing the
    /// table. The inbox keeps only the latest flip per node, so flips must enter it in the
    /// order the table made them: queued after the lock is released, a beat's `alive` could
    /// overtake the `silent` that [`Liveness::expire`] had just made on another thread, and
    /// the controller would hold a beating node silent.
    /// Returns how many it made.
    fn flips(&self, f: impl FnOnce(&mut Liveness) -> Vec<Flip>) -> usize {
        let mut liveness = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
        let flips = f(&mut liveness);
        let made = flips.len();
        for flip in flips {
            self.fleet
                .push(flip.node.clone(), Kind::Liveness, &self.drops, |f, n| {
                    f.liveness.insert(n, flip);
                });
        }
        made
    }

    /// A node's heartbeat: O(1), and no allocation unless it ends a silence.
    pub fn heartbeat(&self, node: &str, beat: Heartbeat, now_ms: u64) {
        self.flips(|l| l.beat(node, beat.interval_ms, now_ms).into_iter().collect());
    }

    /// Declares silent every node whose heartbeats stopped; called periodically.
    pub fn expire(&self, now_ms: u64) {
        self.flips(|l| l.expire(now_ms));
    }

    /// Re-sends the liveness of nodes the controller sees otherwise (`ready`: each node it
    /// knows and whether it is Ready; see [`Liveness::restate`]). Returns how many.
    pub fn restate<'a>(
        &self,
        ready: impl IntoIterator<Item = (&'a str, bool)>,
        now_ms: u64,
    ) -> usize {
        self.flips(|l| l.restate(ready, now_ms))
    }

    /// Nodes beating without the hub holding their announcement, to read again (see
    /// [`Liveness::unannounced`]).
    pub fn unannounced(&self, now_ms: u64, max: usize) -> Vec<String> {
        self.with_liveness(|l| l.unannounced(now_ms, max))
    }

    /// A node's presence (replaces one still pending).
    pub fn presence(&self, node: String, p: Presence, now_ms: u64) {
        self.with_liveness(|l| match &p {
            Presence::Online(_) => l.connected(&node, now_ms),
            Presence::Offline => l.disconnected(&node),
        });
        let online = matches!(p, Presence::Online(_));
        let name = online.then(|| node.clone());
        let kept = self.fleet.push(node, Kind::Presence, &self.drops, |f, n| {
            f.presence.insert(n, p);
        });
        if let (false, Some(name)) = (kept, name) {
            self.with_liveness(|l| l.announcement_lost(&name, now_ms));
        }
    }

    /// A node's status (replaces one still pending).
    pub fn status(&self, node: String, s: NodeStatus) {
        self.fleet.push(node, Kind::Status, &self.drops, |f, n| {
            f.status.insert(n, s);
        });
    }

    /// A node's encoded log batch, unless the queue is full.
    pub fn logs(&self, node: String, payload: Vec<u8>) {
        let len = payload.len();
        let before = self.log_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > LOG_QUEUE_BYTES || self.logs.send((node, payload)).is_err() {
            self.log_bytes.fetch_sub(len, Ordering::Relaxed);
            self.drops.log_batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A node's chunk request on `blob-req`, unless the blob servers are saturated.
    pub fn blob_request(&self, node: String, req: BlobRequest) {
        if self.blobs.try_send((node, req)).is_err() {
            self.drops.blob_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A node's chunk request on `blob-want`: joins the chunk's pending publication or opens
    /// one, unless too many are pending (no allocation, no waiting); or, asked moments after
    /// the chunk was published, goes to the per-node queue.
    pub fn blob_want(&self, node: &str, req: &BlobRequest) {
        match self.fan_out.want(node, req) {
            Want::Joined | Want::Opened(_) => {}
            Want::Direct => self.blob_request(node.to_owned(), req.clone()),
            Want::Full => {
                self.drops.blob_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::Digest;

    use super::*;

    fn status(g: u64) -> NodeStatus {
        NodeStatus {
            observed_generation: g,
            ..NodeStatus::default()
        }
    }

    #[test]
    fn a_drained_storm_leaves_no_large_tables_behind() {
        let (inbox, _, _) = Inbox::new();
        for i in 0..5_000 {
            inbox.status(format!("n{i}"), status(1));
            inbox.presence(format!("n{i}"), Presence::Offline, 0);
        }
        assert_eq!(inbox.fleet.drain().len(), 10_000);
        let f = inbox.fleet.inner.lock().unwrap();
        assert!(f.order.capacity() <= KEEP_SLOTS, "{}", f.order.capacity());
        assert!(f.presence.capacity() <= KEEP_SLOTS);
        assert!(f.status.capacity() <= KEEP_SLOTS);
        drop(f);
        // A small batch keeps its tables (no allocation churn at a fleet's steady pace).
        inbox.status("a".into(), status(2));
        assert_eq!(inbox.fleet.drain().len(), 1);
        assert!(inbox.fleet.inner.lock().unwrap().status.capacity() > 0);
    }

    #[test]
    fn reports_coalesce_per_node_in_arrival_order() {
        let (inbox, _, _) = Inbox::new();
        inbox.status("a".into(), status(1));
        inbox.presence("b".into(), Presence::Offline, 0);
        inbox.status("a".into(), status(2));
        inbox.status("a".into(), status(3));
        inbox.connected(0);
        assert_eq!(
            inbox.fleet.drain(),
            [
                FleetMessage::Connected,
                FleetMessage::Status("a".into(), status(3)),
                FleetMessage::Presence("b".into(), Presence::Offline),
            ]
        );
        assert!(inbox.fleet.drain().is_empty());
    }

    #[test]
    fn only_flips_of_liveness_reach_the_controller_and_the_latest_wins() {
        let (inbox, _, _) = Inbox::new();
        let beat = Heartbeat { interval_ms: 1_000 };
        inbox.heartbeat("a", beat, 0);
        inbox.heartbeat("a", beat, 1_000);
        assert!(inbox.fleet.drain().is_empty(), "beats stay in the table");
        inbox.expire(4_001);
        inbox.heartbeat("a", beat, 4_500);
        let drained = inbox.fleet.drain();
        assert!(
            matches!(&drained[..], [FleetMessage::Liveness(f)] if f.alive && f.node == "a"),
            "{drained:?}"
        );
        inbox.disconnected();
        inbox.expire(60_000);
        assert!(inbox.fleet.drain().is_empty(), "the hub's own outage");
        inbox.connected(60_000);
        inbox.expire(63_001);
        assert!(matches!(
            &inbox.fleet.drain()[..],
            [FleetMessage::Connected, FleetMessage::Liveness(f)] if !f.alive
        ));
    }

    #[tokio::test]
    async fn logs_are_bounded_by_bytes_and_drops_counted() {
        let (inbox, mut rx, _) = Inbox::new();
        let batch = vec![0u8; 1 << 20];
        for _ in 0..20 {
            inbox.logs("a".into(), batch.clone());
        }
        assert_eq!(inbox.drops.log_batches.load(Ordering::Relaxed), 12);
        let mut got = 0;
        while rx.try_recv().is_some() {
            got += 1;
        }
        assert_eq!(got, 8);
        inbox.logs("a".into(), batch);
        assert!(rx.recv().await.is_some(), "room again once consumed");
    }

    #[test]
    fn blob_requests_beyond_the_queue_are_dropped() {
        let (inbox, _, _blobs) = Inbox::new();
        let req = BlobRequest {
            digest: Digest([1; 32]),
            offset: 0,
            len: 1,
        };
        for _ in 0..BLOB_QUEUE + 5 {
            inbox.blob_request("a".into(), req.clone());
        }
        assert_eq!(inbox.drops.blob_requests.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn fan_out_asks_coalesce_and_are_bounded_by_pending_chunks() {
        let (inbox, _, _blobs) = Inbox::new();
        let ask = |offset| BlobRequest {
            digest: Digest([1; 32]),
            offset,
            len: 1,
        };
        for node in ["a", "b", "c"] {
            inbox.blob_want(node, &ask(0));
        }
        for offset in 1..crate::blob_fanout::PENDING_CHUNKS as u64 + 5 {
            inbox.blob_want("a", &ask(offset));
        }
        assert_eq!(inbox.drops.blob_requests.load(Ordering::Relaxed), 5);
    }
}
