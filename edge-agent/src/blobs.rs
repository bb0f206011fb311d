//! Modules by content address: the on-disk store ([`BlobStore`]) and the chunk requester
//! ([`Fetcher`]).
//!
//! Downloads go to `DIR/blobs/<hex>.part` and resume from its length, so a flaky link never
//! restarts a big module from zero. The whole file is checked against its SHA-256 before it is
//! renamed to `DIR/blobs/<hex>`: a file under its final name is always the right bytes.
//!
//! [`Fetcher`] is sans-IO: it decides which [`BlobRequest`]s to send (a window of
//! [`WINDOW`] chunks, re-requested after [`REQUEST_TIMEOUT`]) from replies and the time it is
//! given; the agent loop does the publishing and the disk writes.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmfleet_proto::{BlobReply, BlobRequest, Digest, MAX_BLOB_CHUNK, ModuleRef};

/// Chunks in flight per blob.
pub const WINDOW: usize = 4;
/// A chunk not answered within this time is requested again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed transfer (not found, bad digest), wait this long before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why a blob operation failed. Messages name the digest.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Disk trouble.
    #[error("blob {digest}: {op} {path}: {source}")]
    Io {
        /// Which blob.
        digest: Digest,
        /// What was being done.
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The downloaded bytes do not hash to the digest.
    #[error("blob {expected}: downloaded bytes have digest {actual}; discarded, will retry")]
    DigestMismatch {
        /// What was asked for.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
}

/// Content-addressed module store in `DIR/blobs`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Unreferenced modules kept after a rollout, most recently used first, so rolling back does
/// not download them again.
pub const SPARE_BLOBS: usize = 2;

impl BlobStore {
    /// Deletes what no workload needs: partial downloads of modules not in `keep`, and
    /// complete modules not in `keep` beyond the [`SPARE_BLOBS`] most recently modified.
    /// Every rollout would otherwise grow the gateway's disk use. Returns the digests of the
    /// complete modules still held.
    pub fn prune(&self, keep: &std::collections::HashSet<Digest>) -> io::Result<Vec<Digest>> {
        let mut spares = Vec::new();
        let mut held = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (hex, partial) = match name.strip_suffix(".part") {
                Some(hex) => (hex, true),
                None => (name, false),
            };
            let Ok(digest) = hex.parse::<Digest>() else {
                continue;
            };
            if keep.contains(&digest) {
                if !partial {
                    held.push(digest);
                }
            } else if partial {
                fs::remove_file(entry.path())?;
            } else {
                let modified = entry.metadata()?.modified()?;
                spares.push((modified, digest, entry.path()));
            }
        }
        spares.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (i, (_, digest, path)) in spares.into_iter().enumerate() {
            if i < SPARE_BLOBS {
                held.push(digest);
            } else {
                fs::remove_file(&path)?;
                tracing::info!(digest = %digest.short(), "removed unused module");
            }
        }
        Ok(held)
    }

    /// A store in `data_dir/blobs` (created if missing).
    pub fn open(data_dir: &Path) -> io::Result<BlobStore> {
        let dir = data_dir.join("blobs");
        fs::create_dir_all(&dir)?;
        Ok(BlobStore { dir })
    }

    /// Final path of a complete, verified blob.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Path of a partial download.
    pub fn part_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.part", digest.to_hex()))
    }

    /// Whether the verified blob is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Bytes already downloaded: where a transfer resumes.
    pub fn part_len(&self, digest: &Digest) -> u64 {
        fs::metadata(self.part_path(digest)).map_or(0, |m| m.len())
    }

    /// Writes `data` at `offset` of the partial file. Only appends at the current end are
    /// meaningful; [`Fetcher`] only hands out contiguous data.
    pub fn write_part(&self, digest: &Digest, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        let path = self.part_path(digest);
        let io = |op, source| BlobError::Io {
            digest: *digest,
            op,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        let len = file.metadata().map_err(|e| io("stat", e))?.len();
        if len != offset {
            let msg = format!("partial file has {len} bytes, chunk starts at {offset}");
            return Err(io("append to", io::Error::other(msg)));
        }
        file.write_all(data).map_err(|e| io("write", e))
    }

    /// Verifies the partial file and moves it to its final name. On a mismatch the partial is
    /// deleted so the next attempt starts clean.
    pub fn finish(&self, digest: &Digest) -> Result<(), BlobError> {
        let part = self.part_path(digest);
        let actual = hash_file(&part).map_err(|source| BlobError::Io {
            digest: *digest,
            op: "read",
            path: part.clone(),
            source,
        })?;
        if actual != *digest {
            let _ = fs::remove_file(&part);
            return Err(BlobError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        let sync = fs::File::open(&part).and_then(|f| f.sync_all());
        sync.and_then(|()| fs::rename(&part, self.path(digest)))
            .map_err(|source| BlobError::Io {
                digest: *digest,
                op: "rename",
                path: part,
                source,
            })
    }

    /// Deletes a partial download.
    pub fn discard_part(&self, digest: &Digest) {
        let _ = fs::remove_file(self.part_path(digest));
    }

    /// Stores complete bytes (a side-loaded module, tests), returning their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let digest = digest_of(bytes);
        let path = self.path(&digest);
        crate::state::write_atomic(&path, bytes).map_err(|source| BlobError::Io {
            digest,
            op: "write",
            path,
            source,
        })?;
        Ok(digest)
    }
}

/// SHA-256 of `bytes` as a [`Digest`].
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(Digest(hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
    }
}

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
#[derive(Debug, Clone)]
pub struct Fetcher {
    node: String,
    transfers: BTreeMap<Digest, Transfer>,
}

impl Fetcher {
    /// A requester that signs its requests with `node`.
    pub fn new(node: impl Into<String>) -> Fetcher {
        Fetcher {
            node: node.into(),
            transfers: BTreeMap::new(),
        }
    }

    /// Starts fetching `module` unless already under way; `have` is the partial file's length.
    pub fn want(&mut self, module: ModuleRef, have: u64) {
        self.transfers.entry(module.digest).or_insert(Transfer {
            size: module.size,
            received: have.min(module.size),
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
                node: self.node.clone(),
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

    /// Takes one reply. Chunks ahead of the contiguous end are held until the gap fills.
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
        if t.failure.is_some() || total != t.size || data.is_empty() || offset < t.received {
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

    #[test]
    fn prune_keeps_wanted_and_recent_spares_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = |b: u8| Digest([b; 32]);
        let base = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (b, age) in [(1u8, 0u64), (2, 10), (3, 20), (4, 30), (5, 40)] {
            fs::write(store.path(&d(b)), b"x").unwrap();
            let f = fs::File::options()
                .write(true)
                .open(store.path(&d(b)))
                .unwrap();
            f.set_modified(base - Duration::from_secs(age)).unwrap();
        }
        fs::write(store.part_path(&d(6)), b"partial").unwrap();
        fs::write(store.part_path(&d(1)), b"partial").unwrap();
        fs::write(dir.path().join("blobs/unrelated.txt"), b"?").unwrap();
        let keep = std::collections::HashSet::from([d(1)]);
        let mut held = store.prune(&keep).unwrap();
        held.sort();
        // 1 is wanted; 2 and 3 are the two most recent spares; 4 and 5 go.
        assert_eq!(held, [d(1), d(2), d(3)]);
        for b in [1, 2, 3] {
            assert!(store.has(&d(b)));
        }
        for b in [4, 5] {
            assert!(!store.has(&d(b)));
        }
        assert!(!store.part_path(&d(6)).exists(), "orphaned partial removed");
        assert!(
            store.part_path(&d(1)).exists(),
            "partial of a wanted module kept"
        );
        assert!(
            dir.path().join("blobs/unrelated.txt").exists(),
            "foreign files left alone"
        );
    }

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
        let mut f = Fetcher::new("n1");
        f.want(m, 0);
        let reqs = f.poll(T0);
        assert_eq!(offsets(&reqs), [0, C, 2 * C, 3 * C]);
        assert!(
            reqs.iter()
                .all(|r| r.len == MAX_BLOB_CHUNK && r.node == "n1")
        );
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
        let mut f = Fetcher::new("n");
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
        let mut f = Fetcher::new("n");
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
        let mut f = Fetcher::new("n");
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
        let mut f = Fetcher::new("n");
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
        let mut f = Fetcher::new("n");
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
    fn store_resume_verify_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let digest = digest_of(&bytes);
        store.write_part(&digest, 0, &bytes[..40_000]).unwrap();
        assert_eq!(store.part_len(&digest), 40_000);
        assert!(
            store.write_part(&digest, 10, b"x").is_err(),
            "non-contiguous write rejected"
        );
        store.write_part(&digest, 40_000, &bytes[40_000..]).unwrap();
        store.finish(&digest).unwrap();
        assert!(store.has(&digest));
        assert_eq!(fs::read(store.path(&digest)).unwrap(), bytes);
        assert_eq!(store.part_len(&digest), 0);

        let wrong = Digest([5; 32]);
        store.write_part(&wrong, 0, b"not it").unwrap();
        let err = store.finish(&wrong).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        assert!(!store.has(&wrong));
        assert_eq!(store.part_len(&wrong), 0, "partial deleted");

        // Mismatch reported to the fetcher: it restarts from zero after the pause.
        let mut f = Fetcher::new("n");
        f.want(
            ModuleRef {
                digest: wrong,
                size: 6,
            },
            6,
        );
        f.failed(&wrong, err.to_string(), T0);
        assert!(f.problem(&wrong).unwrap().contains("discarded"));
        assert_eq!(offsets(&f.poll(RETRY_AFTER)), [0]);
    }

    #[test]
    fn put_stores_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put(b"abc").unwrap();
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(store.has(&d));
    }
}
