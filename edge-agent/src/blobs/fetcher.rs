//! The chunk requester, sans-IO: which [`BlobRequest`]s to send for every module being
//! fetched, on which [`Route`] (a window of [`WINDOW`] chunks, re-requested after
//! [`REQUEST_TIMEOUT`]), and what a [`BlobReply`] means. The agent loop does the publishing,
//! the subscriptions and the disk writes.
//!
//! Requests are aligned to the [`MAX_BLOB_CHUNK`] grid, chunk by chunk (a resumed transfer
//! first asks for the rest of its chunk), so nodes fetching the same blob ask for the same
//! ranges.
//!
//! **Routes.** By default a transfer fans out: the fetcher wants the fleet-wide topics
//! `wf/v1/blob/{digest}/{chunk}` of the next [`SUBSCRIBED_CHUNKS`] chunks it still needs
//! subscribed ([`Fetcher::fan_out_topics`]), asks for a chunk on `blob-want`
//! ([`Route::FanOut`]) once the broker granted that chunk's topic, and holds the ask until
//! then ([`Fetcher::holding`]). The hub publishes each chunk once for every node that asked
//! for it meanwhile, and a node takes any chunk it still needs from the topics it is
//! subscribed to, also chunks other nodes asked for: nodes fetching one module in lockstep
//! share them. As chunks arrive the subscriptions move on, so a node receives the chunks it
//! lacks, not the re-publications later askers cause. A transfer asks on its node's
//! `blob-req` instead ([`Route::Direct`], answered on the node's own `blob` topic) when an ask
//! was held for [`SUBSCRIBE_WAIT`] (the broker does not grant the topics), or when a fan-out
//! request was sent [`FAN_OUT_TRIES`] times and no chunk of the blob ever came on a blob topic
//! (a hub older than fan-out). Window, timeouts and retries are the same on both routes.
//!
//! **What is taken.** On the node's own topic, only answers to outstanding requests: a chunk at
//! an offset not asked for, of another length, or reaching past the module's end is ignored,
//! so a stray reply there cannot corrupt a download. On blob topics, also chunks nobody here
//! asked for, if they lie within the module, at or after what was written, within the chunks
//! subscribed ([`AHEAD`] bytes from the chunk being written: bounded memory), and overlap
//! nothing held or asked for. Only the hub may publish there (broker ACLs); the SHA-256
//! checked when the blob is whole is what vouches for the bytes, as on the per-node route.

use std::collections::BTreeMap;
use std::time::Duration;

use wasmfleet_proto::topic::blob_chunk;
use wasmfleet_proto::{BlobReply, BlobRequest, Digest, MAX_BLOB_CHUNK, ModuleRef};

/// Chunks in flight per blob.
pub const WINDOW: usize = 4;
/// A chunk not answered within this time is requested again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed transfer (not found, bad digest), wait this long before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Chunks of a blob whose topics a fan-out transfer keeps subscribed: the one being written
/// and the next ones it still needs (more than the window, so the next ask's topic is
/// granted before it is due, and chunks others asked for are shared).
pub const SUBSCRIBED_CHUNKS: u64 = WINDOW as u64 + 2;
/// Longest an ask waits for its chunk's topic to be granted before the transfer asks per node.
pub const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// How far beyond the start of the chunk being written unrequested chunks from blob topics
/// are held: the subscribed chunks.
pub const AHEAD: u64 = SUBSCRIBED_CHUNKS * MAX_BLOB_CHUNK as u64;
/// Sends of one fan-out request, all unanswered on the blob topic, after which a transfer that
/// never got a chunk there asks per node (the hub does not fan out).
pub const FAN_OUT_TRIES: u8 = 2;

const CHUNK: u64 = MAX_BLOB_CHUNK as u64;

/// Which way a request goes, or a reply came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Asked on `wf/v1/n/{node}/blob-want`; answered on the fleet-wide `wf/v1/blob/{digest}`.
    FanOut,
    /// Asked on `wf/v1/n/{node}/blob-req`; answered on the node's own `wf/v1/n/{node}/blob`.
    Direct,
}

/// A request to publish, and the route to publish it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The chunk wanted.
    pub request: BlobRequest,
    /// Where to ask.
    pub route: Route,
}

/// What a reply means for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Nothing to do (unknown digest, duplicate, stale or stray chunk, or one held until the
    /// gap before it fills).
    Ignored,
    /// Append `data` at `offset` (the current end of the partial file). When `complete`, the
    /// blob is whole: verify it with [`BlobStore::finish`] and report with [`Fetcher::finished`]
    /// or [`Fetcher::failed`].
    ///
    /// [`BlobStore::finish`]: super::BlobStore::finish
    Append {
        /// Which blob.
        digest: Digest,
        /// Where the data goes.
        offset: u64,
        /// Contiguous bytes.
        data: Vec<u8>,
        /// All bytes have arrived.
        complete: bool,
    },
    /// The hub does not have the blob; the transfer is paused for [`RETRY_AFTER`].
    NotFound(Digest),
}

/// How a transfer asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// On `blob-want`, answered on chunk topics (once they are granted).
    FanOut,
    /// On `blob-req`, answered on the node's topic.
    Direct,
}

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Sent {
    len: u32,
    at: Duration,
    /// Times sent.
    tries: u8,
}

/// One blob being downloaded.
#[derive(Debug, Clone)]
struct Transfer {
    size: u64,
    /// Contiguous bytes written to the partial file.
    received: u64,
    /// Requested chunks by offset.
    outstanding: BTreeMap<u64, Sent>,
    /// Chunks that arrived ahead of `received`.
    early: BTreeMap<u64, Vec<u8>>,
    /// Last failure and when to try again.
    failure: Option<(String, Duration)>,
    way: Way,
    /// Since when an ask waits for its chunk's topic to be granted.
    held_since: Option<Duration>,
    /// A chunk of this blob came on a blob topic: the hub fans out.
    fanned: bool,
}

/// Sans-IO chunk requester for all blobs being fetched.
#[derive(Debug, Clone)]
pub struct Fetcher {
    transfers: BTreeMap<Digest, Transfer>,
    fan_out: bool,
}

impl Default for Fetcher {
    fn default() -> Fetcher {
        Fetcher::new()
    }
}

impl Fetcher {
    /// A requester with nothing to fetch, that fans out.
    pub fn new() -> Fetcher {
        Fetcher {
            transfers: BTreeMap::new(),
            fan_out: true,
        }
    }

    /// A requester that only asks per node (`blob-req`), as agents did before fan-out.
    pub fn per_node() -> Fetcher {
        Fetcher {
            fan_out: false,
            ..Fetcher::new()
        }
    }

    /// Whether transfers started (or restarted) from now on fan out.
    pub fn set_fan_out(&mut self, on: bool) {
        self.fan_out = on;
    }

    fn first_way(fan_out: bool) -> Way {
        match fan_out {
            true => Way::FanOut,
            false => Way::Direct,
        }
    }

    /// Starts fetching `module` unless already under way; `have` is the partial file's length.
    /// A partial file as long as the module (or longer) is not resumed: it was complete and
    /// yet is not the module (or could not be finished), so the transfer starts from zero
    /// rather than waiting forever for bytes it will never ask for.
    pub fn want(&mut self, module: ModuleRef, have: u64) {
        let way = Fetcher::first_way(self.fan_out);
        self.transfers.entry(module.digest).or_insert(Transfer {
            size: module.size,
            received: if have < module.size { have } else { 0 },
            outstanding: BTreeMap::new(),
            early: BTreeMap::new(),
            failure: None,
            way,
            held_since: None,
            fanned: false,
        });
    }

    /// Whether `digest` is being fetched.
    pub fn is_fetching(&self, digest: &Digest) -> bool {
        self.transfers.contains_key(digest)
    }

    /// Drops transfers of modules no longer needed.
    pub fn retain(&mut self, mut keep: impl FnMut(&Digest) -> bool) {
        self.transfers.retain(|d, _| keep(d));
    }

    /// Why `digest` is not arriving, if a transfer failed.
    pub fn problem(&self, digest: &Digest) -> Option<String> {
        self.transfers
            .get(digest)?
            .failure
            .as_ref()
            .map(|(m, _)| m.clone())
    }

    /// The chunks `(blob, chunk number)` whose fleet-wide topics
    /// ([`wasmfleet_proto::topic::blob_topic`]) the node should be subscribed to now: up to
    /// [`SUBSCRIBED_CHUNKS`] chunks, from the one being written, that fan-out transfers still
    /// need. Finished, failed and per-node transfers need none.
    pub fn fan_out_topics(&self) -> impl Iterator<Item = (Digest, u64)> + '_ {
        self.transfers
            .iter()
            .filter(|(_, t)| t.failure.is_none() && t.way == Way::FanOut)
            .flat_map(|(d, t)| t.wanted_chunks().map(|c| (*d, c)))
    }

    /// Whether an ask waits for its chunk's topic to be granted: the caller should poll again
    /// soon (a granted subscription is not an event the fetcher sees).
    pub fn holding(&self) -> bool {
        self.transfers
            .values()
            .any(|t| t.failure.is_none() && t.way == Way::FanOut && t.held_since.is_some())
    }

    /// Forgets every outstanding request (e.g. after a reconnect) so [`Fetcher::poll`] sends
    /// them again now (or once their topics are granted again).
    pub fn reset_outstanding(&mut self) {
        for t in self.transfers.values_mut() {
            t.outstanding.clear();
            t.held_since = None;
        }
    }

    /// The requests to send at `now`: re-sends of timed-out chunks, then new chunks up to the
    /// window. `granted(blob, chunk)` says whether a chunk's fleet-wide topic is subscribed
    /// (granted by the broker on the current connection). A failed transfer restarts from zero
    /// once its retry time has come.
    pub fn poll(&mut self, now: Duration, granted: impl Fn(&Digest, u64) -> bool) -> Vec<Ask> {
        let mut out = Vec::new();
        let fan_out = self.fan_out;
        for (digest, t) in &mut self.transfers {
            if let Some((_, retry_at)) = &t.failure {
                if now < *retry_at {
                    continue;
                }
                t.failure = None;
                t.way = Fetcher::first_way(fan_out);
                t.held_since = None;
                t.fanned = false;
            }
            let due: Vec<u64> = t
                .outstanding
                .iter()
                .filter(|(_, s)| now >= s.at + REQUEST_TIMEOUT)
                .map(|(o, _)| *o)
                .collect();
            let unanswered = due.iter().any(|o| t.outstanding[o].tries >= FAN_OUT_TRIES);
            let ungranted = t.held_since.is_some_and(|s| now >= s + SUBSCRIBE_WAIT);
            if t.way == Way::FanOut && ((!t.fanned && unanswered) || ungranted) {
                t.way = Way::Direct;
                t.held_since = None;
            }
            let route = match t.way {
                Way::FanOut => Route::FanOut,
                Way::Direct => Route::Direct,
            };
            let ready = |offset| route == Route::Direct || granted(digest, blob_chunk(offset));
            let ask = |offset, len| Ask {
                request: BlobRequest {
                    digest: *digest,
                    offset,
                    len,
                },
                route,
            };
            let mut held = false;
            for offset in due {
                if !ready(offset) {
                    held = true;
                    continue;
                }
                if let Some(s) = t.outstanding.get_mut(&offset) {
                    s.at = now;
                    s.tries = s.tries.saturating_add(1);
                    out.push(ask(offset, s.len));
                }
            }
            while t.outstanding.len() < WINDOW {
                let Some((offset, len)) = t.next_gap() else {
                    break;
                };
                if !ready(offset) {
                    held = true;
                    break;
                }
                let sent = Sent {
                    len,
                    at: now,
                    tries: 1,
                };
                t.outstanding.insert(offset, sent);
                out.push(ask(offset, len));
            }
            t.held_since = held.then(|| t.held_since.unwrap_or(now));
        }
        out
    }

    /// `req` (from [`Fetcher::poll`]) could not be sent (the link's queue was full): it is not
    /// outstanding, so the next poll asks for it again instead of waiting for its timeout.
    pub fn unsent(&mut self, req: &BlobRequest) {
        if let Some(t) = self.transfers.get_mut(&req.digest) {
            t.outstanding.remove(&req.offset);
        }
    }

    /// Takes one reply that came by `route`. Chunks ahead of the contiguous end are held until
    /// the gap fills; what may be taken is described in the module documentation.
    pub fn on_reply(&mut self, reply: BlobReply, route: Route, now: Duration) -> ReplyOutcome {
        let (digest, offset, total, data) = match reply {
            BlobReply::Chunk {
                digest,
                offset,
                total,
                data,
            } => (digest, offset, total, data),
            BlobReply::NotFound { digest } => {
                if !self.transfers.contains_key(&digest) {
                    return ReplyOutcome::Ignored;
                }
                self.failed(
                    &digest,
                    format!("hub has no module {}; retrying", digest.short()),
                    now,
                );
                return ReplyOutcome::NotFound(digest);
            }
        };
        let Some(t) = self.transfers.get_mut(&digest) else {
            return ReplyOutcome::Ignored;
        };
        if route == Route::FanOut && total == t.size {
            t.fanned = true;
        }
        let len = data.len() as u64;
        let Some(end) = offset.checked_add(len).filter(|end| *end <= t.size) else {
            return ReplyOutcome::Ignored;
        };
        if t.failure.is_some() || total != t.size || len == 0 || offset < t.received {
            return ReplyOutcome::Ignored;
        }
        let asked = t
            .outstanding
            .get(&offset)
            .is_some_and(|s| u64::from(s.len) == len);
        if asked {
            t.outstanding.remove(&offset);
        } else {
            let subscribed_end = (t.received / CHUNK * CHUNK).saturating_add(AHEAD);
            let takeable = route == Route::FanOut
                && len <= CHUNK
                && end <= subscribed_end
                && !t.overlaps(offset, end);
            if !takeable {
                return ReplyOutcome::Ignored;
            }
        }
        t.early.insert(offset, data);
        let start = t.received;
        let mut joined = Vec::new();
        while let Some(chunk) = t.early.remove(&t.received) {
            t.received += chunk.len() as u64;
            joined.extend_from_slice(&chunk);
        }
        if joined.is_empty() {
            return ReplyOutcome::Ignored;
        }
        ReplyOutcome::Append {
            digest,
            offset: start,
            data: joined,
            complete: t.received >= t.size,
        }
    }

    /// The blob was verified and stored: the transfer is over.
    pub fn finished(&mut self, digest: &Digest) {
        self.transfers.remove(digest);
    }

    /// The transfer failed (not found, digest mismatch, disk error): the partial file is gone,
    /// so start again from zero after [`RETRY_AFTER`].
    pub fn failed(&mut self, digest: &Digest, message: String, now: Duration) {
        if let Some(t) = self.transfers.get_mut(digest) {
            t.received = 0;
            t.outstanding.clear();
            t.early.clear();
            t.failure = Some((message, now + RETRY_AFTER));
        }
    }
}

impl Transfer {
    /// The chunks, from the one being written, that are not all held yet: up to
    /// [`SUBSCRIBED_CHUNKS`] of them.
    fn wanted_chunks(&self) -> impl Iterator<Item = u64> + '_ {
        let first = blob_chunk(self.received);
        let last = self.size.div_ceil(CHUNK).min(first + SUBSCRIBED_CHUNKS);
        (first..last).filter(|c| {
            let start = (c * CHUNK).max(self.received);
            let end = ((c + 1) * CHUNK).min(self.size);
            !self.holds(start, end)
        })
    }

    /// Whether chunks held early cover all of `start..end`.
    fn holds(&self, mut start: u64, end: u64) -> bool {
        for (o, d) in self.early.range(..end) {
            let e = o + d.len() as u64;
            if *o <= start && e > start {
                start = e;
            }
        }
        start >= end
    }

    /// Held or requested byte ranges, by start.
    fn covered(&self) -> Vec<(u64, u64)> {
        let requested = self
            .outstanding
            .iter()
            .map(|(o, s)| (*o, o + u64::from(s.len)));
        let early = self.early.iter().map(|(o, d)| (*o, o + d.len() as u64));
        let mut covered: Vec<(u64, u64)> = requested.chain(early).collect();
        covered.sort_unstable();
        covered
    }

    /// Whether `start..end` overlaps a chunk held early or requested.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.covered().iter().any(|(s, e)| *s < end && start < *e)
    }

    /// The next range to ask for: from the first byte at or after `received` that is neither
    /// held early nor requested (the first gap, not the furthest end: after a reconnect forgets
    /// the outstanding requests, a chunk missing below early arrivals must be asked for again),
    /// up to the next held or requested byte, the end of its [`MAX_BLOB_CHUNK`] grid cell, or
    /// the end of the blob. `None` when nothing is left to ask for.
    fn next_gap(&self) -> Option<(u64, u32)> {
        let mut next = self.received;
        let mut limit = self.size;
        for (start, end) in self.covered() {
            if start > next {
                limit = start;
                break;
            }
            next = next.max(end);
        }
        if next >= self.size {
            return None;
        }
        let cell_end = (next / CHUNK + 1) * CHUNK;
        let len = limit.min(self.size).min(cell_end) - next;
        Some((next, len as u32))
    }
}

#[cfg(test)]
mod tests;
