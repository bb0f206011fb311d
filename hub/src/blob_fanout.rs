//! Serving blob chunks to the fleet, off the MQTT loop and off the async workers.
//!
//! Two routes, one pool of [`BLOB_SERVERS`]:
//! - **Per node** (`wf/v1/n/{node}/blob-req`): each request is answered on the asking node's
//!   `blob` topic. Microcontrollers (through their gateway) and agents older than fan-out ask
//!   here. A bounded queue in front ([`crate::mqtt::inbox::BLOB_QUEUE`]); nodes re-ask.
//! - **Fan-out** (`wf/v1/n/{node}/blob-want`): requests for the same chunk coalesce in
//!   [`FanOut`] and the chunk is published once, on its fleet-wide topic
//!   `wf/v1/blob/{digest}/{chunk}`, which the broker delivers to every node waiting for that
//!   chunk. A thousand nodes fetching a new module cost the hub's connection a few
//!   publications per chunk instead of a thousand replies.
//!
//! **Coalescing rule** (level-triggered, loss-tolerant): a chunk asked for is *pending* until
//! its publication is handed to the MQTT client; every ask that arrives meanwhile is answered
//! by that publication (its node subscribed to the chunk's topic before it asked, and the broker
//! handles a client's packets in order, so the publication reaches it). An ask after that
//! starts a new publication:
//! - at once, if the blob is fetched by one node only;
//! - after [`GATHER`] for more asks, if another node asked for the same blob within
//!   [`SHARED_FOR`] (nodes fetching in lockstep share one publication per chunk);
//! - not before a gap after the chunk's last publication: [`REPUBLISH_GAP`], doubling with
//!   every publication that follows the one before as soon as allowed (asks kept coming), up
//!   to [`MAX_REPUBLISH_GAP`]. Many asks that follow a publication closely crossed it on the
//!   way: their node was subscribed and will receive it (then unsubscribes). A new publication
//!   reaches every node still waiting for the chunk, including those whose copy of the last
//!   one is still queued in a busy broker: publishing at the pace asks come would pile copies
//!   into every subscriber's queue, slowing delivery, causing more asks. Within the gap, the
//!   first [`DIRECT_PER_GAP`] asks are answered on their node's own `blob` topic at once (a
//!   node or two that subscribed late, in a small fleet, wait for nothing; a duplicate for a
//!   node whose ask crossed the publication costs one reply); further asks wait for the next
//!   publication.
//!
//! Asks that find [`PENDING_CHUNKS`] chunks pending are dropped and counted; their nodes ask
//! again after their timeout.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use wasmfleet_proto::topic::{self, NodeTopic};
use wasmfleet_proto::{BlobReply, BlobRequest, Digest, MAX_BLOB_CHUNK};

use crate::mqtt::Link;
use crate::mqtt::inbox::BlobQueue;
use crate::store::BlobStore;

/// Chunk requests answered at once (both routes together).
pub const BLOB_SERVERS: usize = 16;
/// Chunks pending publication on the fan-out route, at most (each holds a few dozen bytes).
pub const PENDING_CHUNKS: usize = 4096;
/// How long a new pending chunk of a blob several nodes are fetching waits for more asks.
pub const GATHER: Duration = Duration::from_millis(20);
/// A blob is fetched by several nodes when two asked for it within this time.
pub const SHARED_FOR: Duration = Duration::from_secs(1);
/// Shortest time between two publications of the same chunk.
pub const REPUBLISH_GAP: Duration = Duration::from_secs(1);
/// Longest gap between publications of a chunk asked for all the time (below the nodes'
/// request timeout, so a late node is served before it asks again).
pub const MAX_REPUBLISH_GAP: Duration = Duration::from_secs(4);
/// Asks for a chunk answered per node between two of its publications.
pub const DIRECT_PER_GAP: u32 = 4;

/// One chunk of one blob, as asked for (the length capped at [`MAX_BLOB_CHUNK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Chunk {
    /// Which blob.
    pub digest: Digest,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u32,
}

impl Chunk {
    /// The chunk `req` asks for.
    pub fn of(req: &BlobRequest) -> Chunk {
        Chunk {
            digest: req.digest,
            offset: req.offset,
            len: req.len.min(MAX_BLOB_CHUNK),
        }
    }
}

/// What became of an ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The chunk was pending already: its publication answers this ask too.
    Joined,
    /// A new publication, due at this time (now, after [`GATHER`], or after the gap).
    Opened(Duration),
    /// The chunk was published moments ago: answer this ask on the node's own topic.
    Direct,
    /// Too many chunks pending: dropped (the node asks again after its timeout).
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    due: Duration,
    /// Asks this publication answers.
    asks: u32,
    /// Handed to a server: out of the due queue, not yet published.
    serving: bool,
}

/// A chunk's last publication, the gap before the next, and the asks answered per node since.
#[derive(Debug, Clone, Copy)]
struct Published {
    at: Duration,
    gap: Duration,
    direct: u32,
}

/// The last node that asked for a blob, when, and when a node other than the one before it
/// last asked (the blob is shared for [`SHARED_FOR`] after that).
#[derive(Debug, Clone, Copy)]
struct Asker {
    node: u64,
    at: Duration,
    shared_at: Option<Duration>,
}

/// Sans-IO coalescing of fan-out asks: which chunks to publish when. Time is a parameter.
#[derive(Debug)]
pub struct FanOut {
    pending: HashMap<Chunk, Pending>,
    due: BTreeSet<(Duration, Chunk)>,
    /// When chunks were last published (kept while they matter, at most `capacity`).
    published: HashMap<Chunk, Published>,
    askers: HashMap<Digest, Asker>,
    capacity: usize,
    gather: Duration,
    gap: Duration,
    max_gap: Duration,
    direct: u32,
}

impl FanOut {
    /// Room for `capacity` pending chunks (and as many recently asked-for blobs and recently
    /// published chunks); new chunks of shared blobs wait `gather`; a chunk is published again
    /// `gap` after the last time at the earliest, a gap that doubles up to `max_gap` while the
    /// chunk is asked for all the time; `direct` asks within a gap are answered per node.
    pub fn new(
        capacity: usize,
        gather: Duration,
        gap: Duration,
        max_gap: Duration,
        direct: u32,
    ) -> FanOut {
        FanOut {
            pending: HashMap::new(),
            due: BTreeSet::new(),
            published: HashMap::new(),
            askers: HashMap::new(),
            capacity,
            gather,
            gap,
            max_gap,
            direct,
        }
    }

    /// `node` asks for `chunk` at `now`.
    pub fn want(&mut self, node: &str, chunk: Chunk, now: Duration) -> Want {
        let shared = self.note_asker(node, chunk.digest, now);
        if let Some(p) = self.pending.get_mut(&chunk) {
            p.asks = p.asks.saturating_add(1);
            return Want::Joined;
        }
        if self.pending.len() >= self.capacity {
            return Want::Full;
        }
        let next_allowed = match self.published.get_mut(&chunk) {
            Some(p) if p.at + p.gap > now => {
                if p.direct < self.direct {
                    p.direct += 1;
                    return Want::Direct;
                }
                Some(p.at + p.gap)
            }
            _ => None,
        };
        let due = match next_allowed {
            Some(at) => at,
            None if shared => now + self.gather,
            None => now,
        };
        self.pending.insert(
            chunk,
            Pending {
                due,
                asks: 1,
                serving: false,
            },
        );
        self.due.insert((due, chunk));
        Want::Opened(due)
    }

    /// Records `node` as the latest asker for `digest`; whether the blob is shared: two
    /// nodes asked for it one after the other within [`SHARED_FOR`], no longer ago than that.
    /// With no room to remember, a blob counts as shared (gathering only delays; it never
    /// loses an ask).
    fn note_asker(&mut self, node: &str, digest: Digest, now: Duration) -> bool {
        let node = fnv1a(node);
        let recent = |t: Duration| now.saturating_sub(t) < SHARED_FOR;
        if let Some(a) = self.askers.get_mut(&digest) {
            if a.node != node && recent(a.at) {
                a.shared_at = Some(now);
            }
            a.node = node;
            a.at = now;
            return a.shared_at.is_some_and(recent);
        }
        if self.askers.len() >= self.capacity {
            self.askers.retain(|_, a| recent(a.at));
            if self.askers.len() >= self.capacity {
                return true;
            }
        }
        let asker = Asker {
            node,
            at: now,
            shared_at: None,
        };
        self.askers.insert(digest, asker);
        false
    }

    /// The chunks due at `now`, in due order, handed over for publication: asks for them
    /// still join until [`FanOut::served`].
    pub fn take_due(&mut self, now: Duration) -> Vec<Chunk> {
        let mut out = Vec::new();
        while let Some(&(due, chunk)) = self.due.first() {
            if due > now {
                break;
            }
            self.due.pop_first();
            if let Some(p) = self.pending.get_mut(&chunk) {
                p.serving = true;
            }
            out.push(chunk);
        }
        out
    }

    /// When the next pending chunk is due, if any is waiting.
    pub fn next_due(&self) -> Option<Duration> {
        self.due.first().map(|(due, _)| *due)
    }

    /// The publication of `chunk` is handed to the MQTT client at `now` (or was given up): it
    /// is no longer pending, and a later ask starts a new one, a gap after this one at the
    /// earliest. Returns the asks it answers.
    pub fn served(&mut self, chunk: &Chunk, now: Duration) -> u32 {
        let Some(p) = self.pending.remove(chunk) else {
            return 0;
        };
        debug_assert!(p.serving, "served before it was due");
        self.due.remove(&(p.due, *chunk));
        // Published again soon after the gap allowed it: asks keep coming, slow down.
        let gap = match self.published.get(chunk) {
            Some(last) if now < last.at + 2 * last.gap => (2 * last.gap).min(self.max_gap),
            _ => self.gap,
        };
        if self.published.len() >= self.capacity {
            self.published
                .retain(|_, last| now < last.at + 2 * last.gap);
        }
        if self.published.len() < self.capacity || self.published.contains_key(chunk) {
            let published = Published {
                at: now,
                gap,
                direct: 0,
            };
            self.published.insert(*chunk, published);
        }
        p.asks
    }

    /// Chunks pending publication.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// FNV-1a, 64 bits: a node name's identity for [`FanOut`] without keeping the name.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// [`FanOut`] shared by the MQTT router, which records asks without waiting, and the blob
/// servers, which publish what is due.
#[derive(Debug)]
pub struct FanOutQueue {
    state: Mutex<FanOut>,
    origin: tokio::time::Instant,
    wake: Notify,
}

impl Default for FanOutQueue {
    fn default() -> FanOutQueue {
        FanOutQueue {
            state: Mutex::new(FanOut::new(
                PENDING_CHUNKS,
                GATHER,
                REPUBLISH_GAP,
                MAX_REPUBLISH_GAP,
                DIRECT_PER_GAP,
            )),
            origin: tokio::time::Instant::now(),
            wake: Notify::new(),
        }
    }
}

impl FanOutQueue {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn with<T>(&self, f: impl FnOnce(&mut FanOut) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Chunks pending publication.
    pub fn pending(&self) -> usize {
        self.with(|f| f.pending())
    }

    /// `node` asks for a chunk on the fan-out route: [`Want::Joined`], [`Want::Opened`] (the
    /// servers are woken), [`Want::Direct`] (the caller queues it per node) or [`Want::Full`].
    pub fn want(&self, node: &str, req: &BlobRequest) -> Want {
        let now = self.now();
        let want = self.with(|f| f.want(node, Chunk::of(req), now));
        if let Want::Opened(_) = want {
            self.wake.notify_one();
        }
        want
    }
}

/// Answers chunk requests from the blob store: per node as they come, and on the fan-out
/// route as [`FanOut`] makes them due, at most [`BLOB_SERVERS`] at a time. Ends when the link's
/// router (the queue's sender) is gone.
pub async fn blob_servers(blobs: BlobStore, link: Link, queue: BlobQueue) {
    let permits = Arc::new(Semaphore::new(BLOB_SERVERS));
    let BlobQueue {
        mut direct,
        fan_out,
    } = queue;
    let per_node = async {
        while let Some((node, req)) = direct.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (blobs, link) = (blobs.clone(), link.clone());
            tokio::spawn(async move {
                serve_node(blobs, link, node, req).await;
                drop(permit);
            });
        }
    };
    let fanned = async {
        loop {
            let (due, next) = fan_out.with(|f| (f.take_due(fan_out.now()), f.next_due()));
            for chunk in due {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (blobs, link, queue) = (blobs.clone(), link.clone(), fan_out.clone());
                tokio::spawn(async move {
                    serve_fan_out(blobs, link, &queue, chunk).await;
                    drop(permit);
                });
            }
            match next {
                Some(at) => {
                    let at = fan_out.origin + at;
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = fan_out.wake.notified() => {}
                    }
                }
                None => fan_out.wake.notified().await,
            }
        }
    };
    tokio::select! {
        () = per_node => {}
        () = fanned => {}
    }
}

/// Reads a chunk on the blocking pool: `Ok(None)` if the blob is not held or the range is
/// outside it; `Err(())` if the read failed (logged) or the task died.
async fn read(blobs: &BlobStore, chunk: Chunk) -> Result<Option<(u64, Vec<u8>)>, ()> {
    let blobs = blobs.clone();
    let read = tokio::task::spawn_blocking(move || {
        blobs.read_range(&chunk.digest, chunk.offset, chunk.len)
    })
    .await;
    match read {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => {
            tracing::error!("reading blob {}: {e}", chunk.digest);
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Answers one request on the asking node's blob topic.
async fn serve_node(blobs: BlobStore, link: Link, node: String, req: BlobRequest) {
    let chunk = Chunk::of(&req);
    let digest = chunk.digest;
    let reply = match read(&blobs, chunk).await {
        Ok(Some((total, data))) => BlobReply::Chunk {
            digest,
            offset: chunk.offset,
            total,
            data,
        },
        // Not held, out of range, or unreadable: the node pauses and retries.
        Ok(None) | Err(()) => BlobReply::NotFound { digest },
    };
    let topic = topic::node_topic(&node, NodeTopic::Blob);
    link.publish(topic, wasmfleet_proto::encode(&reply), false)
        .await;
}

/// Publishes one pending chunk on its fleet-wide topic. A blob the hub does not hold is
/// announced there as `NotFound` (true for every node fetching it); a range outside the blob
/// or a failed read is not answered at all (it must not stop other nodes' transfers; the
/// askers time out and ask again, eventually per node).
async fn serve_fan_out(blobs: BlobStore, link: Link, queue: &FanOutQueue, chunk: Chunk) {
    let digest = chunk.digest;
    let reply = match read(&blobs, chunk).await {
        Ok(Some((total, data))) => Some(BlobReply::Chunk {
            digest,
            offset: chunk.offset,
            total,
            data,
        }),
        Ok(None) if blobs.size(&digest).is_none() => Some(BlobReply::NotFound { digest }),
        Ok(None) | Err(()) => None,
    };
    // From here on a new ask needs a new publication: this one may already be on its way.
    let now = queue.now();
    let asks = queue.with(|f| f.served(&chunk, now));
    let Some(reply) = reply else {
        tracing::debug!(%digest, offset = chunk.offset, asks, "fan-out ask out of range: not answered");
        return;
    };
    tracing::trace!(%digest, offset = chunk.offset, asks, "chunk published");
    link.publish(
        topic::blob_topic(&digest, topic::blob_chunk(chunk.offset)),
        wasmfleet_proto::encode(&reply),
        false,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const G: Duration = Duration::from_millis(20);
    const GAP: Duration = Duration::from_millis(250);

    fn chunk(d: u8, offset: u64) -> Chunk {
        Chunk {
            digest: Digest([d; 32]),
            offset,
            len: MAX_BLOB_CHUNK,
        }
    }

    fn fan_out(capacity: usize) -> FanOut {
        FanOut::new(capacity, G, GAP, MAX_REPUBLISH_GAP, 0)
    }

    /// Takes what is due at `now` and publishes it; returns the chunks and the asks answered.
    fn publish(f: &mut FanOut, now: Duration) -> (Vec<Chunk>, u32) {
        let due = f.take_due(now);
        let asks = due.iter().map(|c| f.served(c, now)).sum();
        (due, asks)
    }

    #[test]
    fn a_lone_fetcher_is_served_at_once() {
        let mut f = fan_out(16);
        let t = 100 * MS;
        for k in 0..4 {
            assert_eq!(f.want("a", chunk(1, k), t), Want::Opened(t));
        }
        assert_eq!(
            f.take_due(t),
            (0..4).map(|k| chunk(1, k)).collect::<Vec<_>>()
        );
        assert_eq!(f.next_due(), None);
    }

    #[test]
    fn asks_for_a_pending_chunk_join_its_publication_and_later_ones_start_anew() {
        let mut f = fan_out(16);
        let c = chunk(1, 0);
        assert_eq!(f.want("a", c, MS), Want::Opened(MS));
        // Another node fetches the same blob: its asks are gathered.
        assert_eq!(f.want("b", chunk(1, 1), 2 * MS), Want::Opened(2 * MS + G));
        assert_eq!(f.want("b", c, 3 * MS), Want::Joined);
        assert_eq!(f.take_due(3 * MS), [c]);
        // Taken for publication, not published yet: still joins.
        assert_eq!(f.want("c", c, 4 * MS), Want::Joined);
        assert_eq!(f.served(&c, 4 * MS), 3, "one publication for a, b and c");
        // After the publication, an ask (from a node that subscribed late, or one whose ask
        // crossed the publication) needs another, not before the gap.
        assert_eq!(f.want("d", c, 5 * MS), Want::Opened(4 * MS + GAP));
        assert_eq!(f.want("e", c, 6 * MS), Want::Joined);
        assert_eq!(f.next_due(), Some(2 * MS + G));
        assert_eq!(publish(&mut f, 2 * MS + G), (vec![chunk(1, 1)], 1));
        assert!(
            f.take_due(4 * MS + GAP - MS).is_empty(),
            "not within the gap"
        );
        assert_eq!(publish(&mut f, 4 * MS + GAP), (vec![c], 2));
        assert_eq!(f.served(&c, 5 * MS + GAP), 0, "nothing pending");
        assert_eq!(f.pending(), 0);
        // Long after, a chunk is published at once again.
        let later = 10 * GAP;
        assert_eq!(f.want("d", c, later), Want::Opened(later));
    }

    #[test]
    fn a_thousand_nodes_in_lockstep_cost_one_publication_per_chunk() {
        let mut f = fan_out(PENDING_CHUNKS);
        let mut published = 0;
        let mut asks = 0;
        for node in 0..1000 {
            let name = format!("n{node}");
            // Within the gather window of the first (shared) ask.
            let now = 1000 * MS + Duration::from_micros(node * 15);
            for k in 0..5 {
                f.want(&name, chunk(9, k), now);
                asks += 1;
            }
            let (due, _) = publish(&mut f, now);
            published += due.len();
        }
        let (due, answered) = publish(&mut f, 2000 * MS);
        published += due.len();
        asks -= answered as usize;
        assert_eq!(
            published, 10,
            "the first node's five at once, then five for the rest"
        );
        assert_eq!(asks, 5, "the first node's, answered on their own");
    }

    #[test]
    fn asks_coming_all_the_time_are_published_ever_more_slowly() {
        let mut f = fan_out(PENDING_CHUNKS);
        let mut at = Vec::new();
        // 20,000 nodes ask for one chunk over 20 seconds, one every millisecond.
        for node in 0..20_000u64 {
            let now = Duration::from_millis(node);
            f.want(&format!("n{node}"), chunk(3, 0), now);
            if !publish(&mut f, now).0.is_empty() {
                at.push(node);
            }
        }
        assert_eq!(
            at[..6],
            [0, 250, 750, 1750, 3750, 7750],
            "gaps of 0.25, 0.5, 1, 2, 4 s"
        );
        assert_eq!(at[6..], [11_750, 15_750, 19_750], "then every 4 s");
        assert_eq!(
            publish(&mut f, Duration::from_secs(24)).1,
            249,
            "the asks since 19.75 s"
        );
        // After a quiet while, a new ask is answered at once again.
        let later = Duration::from_secs(40);
        assert_eq!(f.want("late", chunk(3, 0), later), Want::Opened(later));
    }

    #[test]
    fn the_first_asks_after_a_publication_are_answered_per_node() {
        let mut f = FanOut::new(16, G, GAP, MAX_REPUBLISH_GAP, 2);
        let c = chunk(1, 0);
        f.want("a", c, MS);
        publish(&mut f, MS);
        assert_eq!(f.want("late-1", c, 2 * MS), Want::Direct);
        assert_eq!(f.want("late-2", c, 3 * MS), Want::Direct);
        assert_eq!(
            f.want("late-3", c, 4 * MS),
            Want::Opened(MS + GAP),
            "then the next one"
        );
        assert_eq!(f.want("late-4", c, 5 * MS), Want::Joined);
        assert_eq!(publish(&mut f, MS + GAP), (vec![c], 2));
        assert_eq!(
            f.want("late-5", c, 2 * MS + GAP),
            Want::Direct,
            "counted per gap"
        );
    }

    #[test]
    fn blobs_fetched_by_one_node_at_a_time_are_not_delayed() {
        let mut f = fan_out(16);
        assert_eq!(f.want("a", chunk(1, 0), MS), Want::Opened(MS));
        assert_eq!(
            f.want("b", chunk(2, 0), MS),
            Want::Opened(MS),
            "another blob"
        );
        let later = MS + SHARED_FOR;
        assert_eq!(
            f.want("b", chunk(1, 1), later),
            Want::Opened(later),
            "long after a"
        );
    }

    #[test]
    fn pending_state_is_bounded() {
        let mut f = fan_out(4);
        for k in 0..4 {
            assert!(matches!(f.want("a", chunk(1, k), MS), Want::Opened(_)));
        }
        assert_eq!(f.want("a", chunk(1, 9), MS), Want::Full);
        assert_eq!(
            f.want("b", chunk(1, 0), MS),
            Want::Joined,
            "joining costs nothing"
        );
        // A client inventing digests fills the tables of askers and publications too: then
        // blobs count as shared, and nothing more is remembered.
        let mut g = fan_out(4);
        for d in 0..4 {
            g.want("x", chunk(d, 0), MS);
            publish(&mut g, MS);
        }
        assert_eq!(g.want("x", chunk(7, 0), 2 * MS), Want::Opened(2 * MS + G));
        publish(&mut g, 2 * MS + G);
        assert!(g.askers.len() <= 4 && g.published.len() <= 4);
        // Once the old entries age out, there is room again.
        let t = 3 * MS + SHARED_FOR;
        assert_eq!(g.want("x", chunk(8, 0), t), Want::Opened(t));
        publish(&mut g, t);
        assert!(g.published.contains_key(&chunk(8, 0)));
    }

    #[test]
    fn asks_are_capped_at_one_chunk() {
        let req = BlobRequest {
            digest: Digest([1; 32]),
            offset: 0,
            len: u32::MAX,
        };
        assert_eq!(Chunk::of(&req).len, MAX_BLOB_CHUNK);
    }
}
