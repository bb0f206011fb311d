//! The chunk requester, sans-IO: which [`BlobRequest`]s to send for every module being
//! fetched (a window of [`WINDOW`] chunks, re-requested after [`REQUEST_TIMEOUT`]), and what a
//! [`BlobReply`] means. The agent loop does the publishing and the disk writes.
//!
//! Only answers to requests are taken: a chunk at an offset not asked for, of another length,
//! or reaching past the module's end is ignored, so a stray or forged reply on the node's blob
//! topic cannot corrupt a download (the final SHA-256 check would catch it, but only after the
//! whole module was fetched again).

use std::collections::BTreeMap;
use std::time::Duration;

use wasmfleet_proto::{BlobReply, BlobRequest, Digest, MAX_BLOB_CHUNK, ModuleRef};

/// Chunks in flight per blob.
pub const WINDOW: usize = 4;
/// A chunk not answered within this time is requested again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed transfer (not found, bad digest), wait this long before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a reply means for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Nothing to do (unknown digest, duplicate or stale chunk).
    Ignored,
    /// Append `data` at `offset` (the current end of the partial file). When `complete`, the
    /// blob is whole: verify it with [`BlobStore::finish`] and report with [`Fetcher::finished`]
    /// or [`Fetcher::failed`].
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

/// One blob being downloaded.
#[derive(Debug, Clone)]
struct Transfer {
    size: u64,
    /// Contiguous bytes written to the partial file.
    received: u64,
    /// Requested chunks by offset: (length, sent at).
    outstanding: BTreeMap<u64, (u32, Duration)>,
    /// Chunks that arrived ahead of `received`.
    early: BTreeMap<u64, Vec<u8>>,
    /// Last failure and when to try again.
    failure: Option<(String, Duration)>,
}

/// Sans-IO chunk requester for all blobs being fetched.
#[derive(Debug, Clone, Default)]
pub struct Fetcher {
    transfers: BTreeMap<Digest, Transfer>,
}

impl Fetcher {
    /// A requester with nothing to fetch.
    pub fn new() -> Fetcher {
        Fetcher::default()
    }

    /// Starts fetching `module` unless already under way; `have` is the partial file's length.
    /// A partial file as long as the module (or longer) is not resumed: it was complete and
    /// yet is not the module (or could not be finished), so the transfer starts from zero
    /// rather than waiting forever for bytes it will never ask for.
    pub fn want(&mut self, module: ModuleRef, have: u64) {
        self.transfers.entry(module.digest).or_insert(Transfer {
            size: module.size,
            received: if have < module.size { have } else { 0 },
            outstanding: BTreeMap::new(),
            early: BTreeMap::new(),
            failure: None,
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

    /// Forgets every outstanding request (e.g. after a reconnect) so [`Fetcher::poll`] sends
    /// them again now.
    pub fn reset_outstanding(&mut self) {
        for t in self.transfers.values_mut() {
            t.outstanding.clear();
        }
    }

    /// The requests to send at `now`: re-sends of timed-out chunks, then new chunks up to the
    /// window. A failed transfer restarts from zero once its retry time has come.
    pub fn poll(&mut self, now: Duration) -> Vec<BlobRequest> {
        let mut out = Vec::new();
        for (digest, t) in &mut self.transfers {
            if let Some((_, retry_at)) = &t.failure {
                if now < *retry_at {
                    continue;
                }
                t.failure = None;
            }
            let request = |offset, len| BlobRequest {
                digest: *digest,
                offset,
                len,
            };
            for (&offset, (len, sent)) in t.outstanding.iter_mut() {
                if now >= *sent + REQUEST_TIMEOUT {
                    *sent = now;
                    out.push(request(offset, *len));
                }
            }
            while t.outstanding.len() < WINDOW {
                let next = t.next_offset();
                if next >= t.size {
                    break;
                }
                let len = (t.size - next).min(u64::from(MAX_BLOB_CHUNK)) as u32;
                t.outstanding.insert(next, (len, now));
                out.push(request(next, len));
            }
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

    /// Takes one reply. Chunks ahead of the contiguous end are held until the gap fills; a
    /// chunk that answers no outstanding request is ignored.
    pub fn on_reply(&mut self, reply: BlobReply, now: Duration) -> ReplyOutcome {
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
        let asked = t.outstanding.get(&offset).map(|(len, _)| u64::from(*len));
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= t.size);
        if t.failure.is_some()
            || total != t.size
            || asked != Some(data.len() as u64)
            || !fits
            || offset < t.received
        {
            return ReplyOutcome::Ignored;
        }
        t.outstanding.remove(&offset);
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
    /// First byte at or after `received` that is neither held early nor requested. The first
    /// gap, not the furthest end: after a reconnect forgets the outstanding requests, a chunk
    /// missing below early arrivals must be asked for again.
    fn next_offset(&self) -> u64 {
        let requested = self
            .outstanding
            .iter()
            .map(|(o, (l, _))| (*o, o + u64::from(*l)));
        let early = self.early.iter().map(|(o, d)| (*o, o + d.len() as u64));
        let mut covered: Vec<(u64, u64)> = requested.chain(early).collect();
        covered.sort_unstable();
        let mut next = self.received;
        for (start, end) in covered {
            if start > next {
                break;
            }
            next = next.max(end);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = MAX_BLOB_CHUNK as u64;
    const T0: Duration = Duration::ZERO;

    fn module(size: u64) -> ModuleRef {
        ModuleRef {
            digest: Digest([7; 32]),
            size,
        }
    }

    fn offsets(reqs: &[BlobRequest]) -> Vec<u64> {
        reqs.iter().map(|r| r.offset).collect()
    }

    fn chunk(m: ModuleRef, offset: u64, len: u64) -> BlobReply {
        BlobReply::Chunk {
            digest: m.digest,
            offset,
            total: m.size,
            data: vec![1; len as usize],
        }
    }

    #[test]
    fn window_of_four_and_slides() {
        let m = module(10 * C + 5);
        let mut f = Fetcher::new();
        f.want(m, 0);
        let reqs = f.poll(T0);
        assert_eq!(offsets(&reqs), [0, C, 2 * C, 3 * C]);
        assert!(reqs.iter().all(|r| r.len == MAX_BLOB_CHUNK));
        assert!(f.poll(T0).is_empty(), "window full");
        let out = f.on_reply(chunk(m, 0, C), T0);
        assert_eq!(
            out,
            ReplyOutcome::Append {
                digest: m.digest,
                offset: 0,
                data: vec![1; C as usize],
                complete: false
            }
        );
        assert_eq!(offsets(&f.poll(T0)), [4 * C]);
    }

    #[test]
    fn last_chunk_is_short_and_completes() {
        let m = module(C + 5);
        let mut f = Fetcher::new();
        f.want(m, 0);
        let reqs = f.poll(T0);
        assert_eq!(
            reqs.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(),
            [(0, MAX_BLOB_CHUNK), (C, 5)]
        );
        assert_eq!(
            f.on_reply(chunk(m, C, 5), T0),
            ReplyOutcome::Ignored,
            "held until the gap fills"
        );
        match f.on_reply(chunk(m, 0, C), T0) {
            ReplyOutcome::Append {
                offset: 0,
                data,
                complete: true,
                ..
            } => assert_eq!(data.len() as u64, C + 5),
            other => panic!("{other:?}"),
        }
        f.finished(&m.digest);
        assert!(!f.is_fetching(&m.digest));
        assert!(f.poll(T0).is_empty());
    }

    #[test]
    fn a_gap_below_early_chunks_is_requested_again_after_reconnect() {
        let m = module(4 * C);
        let mut f = Fetcher::new();
        f.want(m, 0);
        assert_eq!(offsets(&f.poll(T0)), [0, C, 2 * C, 3 * C]);
        // Replies arrive out of order, then the link drops before chunk 0 arrives.
        assert_eq!(f.on_reply(chunk(m, C, C), T0), ReplyOutcome::Ignored);
        assert_eq!(f.on_reply(chunk(m, 2 * C, C), T0), ReplyOutcome::Ignored);
        f.reset_outstanding();
        assert_eq!(
            offsets(&f.poll(T0)),
            [0, 3 * C],
            "the gap and the rest, nothing twice"
        );
        match f.on_reply(chunk(m, 0, C), T0) {
            ReplyOutcome::Append {
                offset: 0,
                data,
                complete: false,
                ..
            } => {
                assert_eq!(data.len() as u64, 3 * C)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_re_requests() {
        let m = module(2 * C);
        let mut f = Fetcher::new();
        f.want(m, 0);
        assert_eq!(f.poll(T0).len(), 2);
        f.on_reply(chunk(m, 0, C), T0);
        assert!(
            f.poll(REQUEST_TIMEOUT - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(offsets(&f.poll(REQUEST_TIMEOUT)), [C]);
        assert!(
            f.poll(REQUEST_TIMEOUT + Duration::from_secs(1)).is_empty(),
            "timer restarted"
        );
        f.reset_outstanding();
        assert_eq!(
            offsets(&f.poll(REQUEST_TIMEOUT + Duration::from_secs(1))),
            [C]
        );
    }

    #[test]
    fn resumes_from_partial_length() {
        let m = module(3 * C);
        let mut f = Fetcher::new();
        f.want(m, C + 10);
        assert_eq!(offsets(&f.poll(T0)), [C + 10, 2 * C + 10]);
        assert_eq!(
            f.on_reply(chunk(m, 0, C), T0),
            ReplyOutcome::Ignored,
            "stale data before the resume point"
        );
    }

    #[test]
    fn not_found_pauses_then_retries_from_zero() {
        let m = module(C);
        let mut f = Fetcher::new();
        f.want(m, 0);
        f.poll(T0);
        assert_eq!(
            f.on_reply(BlobReply::NotFound { digest: m.digest }, T0),
            ReplyOutcome::NotFound(m.digest)
        );
        assert!(f.problem(&m.digest).unwrap().contains("hub has no module"));
        assert!(f.poll(RETRY_AFTER - Duration::from_millis(1)).is_empty());
        assert_eq!(offsets(&f.poll(RETRY_AFTER)), [0]);
        assert_eq!(f.problem(&m.digest), None);
        let other = BlobReply::NotFound {
            digest: Digest([0; 32]),
        };
        assert_eq!(f.on_reply(other, T0), ReplyOutcome::Ignored);
    }

    #[test]
    fn spoofed_or_stray_chunks_are_ignored() {
        let m = module(3 * C);
        let mut f = Fetcher::new();
        f.want(m, 0);
        assert_eq!(offsets(&f.poll(T0)), [0, C, 2 * C]);
        let forged = |offset: u64, len: u64, total: u64| BlobReply::Chunk {
            digest: m.digest,
            offset,
            total,
            data: vec![9; len as usize],
        };
        for (what, reply) in [
            ("an offset never asked for", forged(C / 2, C, m.size)),
            ("a short answer to a full request", forged(0, C - 1, m.size)),
            ("a longer answer", forged(0, C + 1, m.size)),
            ("another total", forged(0, C, m.size + 1)),
            ("past the end", forged(3 * C, C, m.size)),
            ("an offset that overflows", forged(u64::MAX - 1, C, m.size)),
        ] {
            assert_eq!(f.on_reply(reply, T0), ReplyOutcome::Ignored, "{what}");
        }
        // The real answer is still taken.
        assert!(matches!(
            f.on_reply(chunk(m, 0, C), T0),
            ReplyOutcome::Append { offset: 0, .. }
        ));
        // A duplicate of an answered request is not outstanding any more.
        assert_eq!(f.on_reply(chunk(m, 0, C), T0), ReplyOutcome::Ignored);
    }

    #[test]
    fn an_unsent_request_is_asked_for_again_at_once() {
        let m = module(2 * C);
        let mut f = Fetcher::new();
        f.want(m, 0);
        let reqs = f.poll(T0);
        assert_eq!(offsets(&reqs), [0, C]);
        f.unsent(&reqs[1]);
        assert_eq!(offsets(&f.poll(T0)), [C], "not left to time out");
    }

    #[test]
    fn a_complete_partial_that_could_not_be_finished_starts_over() {
        let m = module(2 * C);
        let mut f = Fetcher::new();
        f.want(m, 2 * C);
        assert_eq!(offsets(&f.poll(T0)), [0, C], "fetched again, not stalled");
        let mut g = Fetcher::new();
        g.want(m, 5 * C);
        assert_eq!(offsets(&g.poll(T0)), [0, C]);
    }
}
