//! Fetching one artifact through the gateway: sequential chunk requests, each chunk written to
//! flash as it arrives and hashed on the way, so the device never holds more than one chunk in
//! RAM and never reads its flash back to verify. A chunk that does not come is asked for again;
//! duplicates and stale replies are ignored (the link and MQTT QoS 1 may repeat them).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmfleet_proto::link::MCU_BLOB_CHUNK;
use wasmfleet_proto::{BlobReply, BlobRequest, Digest, ModuleRef};

use crate::artifacts::Extent;

/// A request unanswered this long is sent again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// An artifact download in progress.
#[derive(Debug, Clone)]
pub struct Fetch {
    module: ModuleRef,
    extent: Extent,
    next: u64,
    hasher: Sha256,
    asked_at: Duration,
}

/// What a reply means for the download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do (a duplicate, a stale or foreign reply).
    Ignore,
    /// Write `data` at `offset` of the artifact region, then send `next`.
    Write {
        /// Region offset.
        offset: u32,
        /// Bytes to write.
        data: Vec<u8>,
        /// The following request, or `None` when this was the last chunk and the digest matched.
        next: Option<BlobRequest>,
    },
    /// The download failed: why.
    Failed(String),
}

impl Fetch {
    /// Starts downloading `module` into `extent`; returns the first request to send.
    pub fn start(module: ModuleRef, extent: Extent, now: Duration) -> (Fetch, BlobRequest) {
        let fetch = Fetch {
            module,
            extent,
            next: 0,
            hasher: Sha256::new(),
            asked_at: now,
        };
        let req = fetch.request();
        (fetch, req)
    }

    /// The artifact being fetched.
    pub fn digest(&self) -> Digest {
        self.module.digest
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.next
    }

    /// Handles a blob reply.
    pub fn on_reply(&mut self, reply: BlobReply, now: Duration) -> Step {
        let (offset, total, data) = match reply {
            BlobReply::NotFound { digest } if digest == self.module.digest => {
                return Step::Failed(format!("the hub does not hold artifact {}", digest.short()));
            }
            BlobReply::Chunk {
                digest,
                offset,
                total,
                data,
            } if digest == self.module.digest && offset == self.next => (offset, total, data),
            _ => return Step::Ignore,
        };
        let end = offset + data.len() as u64;
        if total != self.module.size || data.is_empty() || end > self.module.size {
            return Step::Failed(format!(
                "the hub sent a malformed chunk of artifact {} (bytes {offset}..{end} of {total}, \
                 expected {} bytes)",
                self.module.digest.short(),
                self.module.size
            ));
        }
        self.hasher.update(&data);
        self.next = end;
        self.asked_at = now;
        let region_offset = self.extent.offset + offset as u32;
        let next = if end < self.module.size {
            Some(self.request())
        } else {
            let got: [u8; 32] = self.hasher.clone().finalize().into();
            if got != self.module.digest.0 {
                return Step::Failed(format!(
                    "artifact {} arrived corrupt: its SHA-256 is {}",
                    self.module.digest.short(),
                    Digest(got).short()
                ));
            }
            None
        };
        Step::Write {
            offset: region_offset,
            data,
            next,
        }
    }

    /// The request to send again if the last one went unanswered.
    pub fn on_tick(&mut self, now: Duration) -> Option<BlobRequest> {
        if now.saturating_sub(self.asked_at) < REQUEST_TIMEOUT {
            return None;
        }
        self.asked_at = now;
        Some(self.request())
    }

    fn request(&self) -> BlobRequest {
        let left = self.module.size - self.next;
        BlobRequest {
            digest: self.module.digest,
            offset: self.next,
            len: left.min(u64::from(MCU_BLOB_CHUNK)) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;

    fn module(bytes: &[u8]) -> ModuleRef {
        ModuleRef {
            digest: Digest(Sha256::digest(bytes).into()),
            size: bytes.len() as u64,
        }
    }

    fn chunk(m: &ModuleRef, bytes: &[u8], offset: u64, len: u32) -> BlobReply {
        let end = (offset as usize + len as usize).min(bytes.len());
        BlobReply::Chunk {
            digest: m.digest,
            offset,
            total: bytes.len() as u64,
            data: bytes[offset as usize..end].to_vec(),
        }
    }

    #[test]
    fn fetches_in_chunks_ignores_duplicates_and_verifies_the_digest() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let m = module(&bytes);
        let ext = Extent {
            offset: 8192,
            len: 5000,
        };
        let (mut f, req) = Fetch::start(m, ext, Duration::ZERO);
        assert_eq!((req.offset, req.len), (0, MCU_BLOB_CHUNK));
        let mut written = vec![0u8; 5000];
        let mut req = Some(req);
        let mut steps = 0;
        while let Some(r) = req.take() {
            let reply = chunk(&m, &bytes, r.offset, r.len);
            match f.on_reply(reply.clone(), Duration::ZERO) {
                Step::Write { offset, data, next } => {
                    let at = (offset - 8192) as usize;
                    written[at..at + data.len()].copy_from_slice(&data);
                    req = next;
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(f.on_reply(reply, Duration::ZERO), Step::Ignore, "duplicate");
            steps += 1;
        }
        assert_eq!((steps, written), (3, bytes));
    }

    #[test]
    fn corruption_not_found_and_silence_are_handled() {
        let bytes = vec![7u8; 100];
        let m = module(&bytes);
        let ext = Extent {
            offset: 0,
            len: 100,
        };
        let (mut f, _) = Fetch::start(m, ext, Duration::ZERO);
        let mut bad = bytes.clone();
        bad[50] = 8;
        let Step::Failed(why) = f.on_reply(chunk(&m, &bad, 0, 100), Duration::ZERO) else {
            panic!()
        };
        assert!(why.contains("arrived corrupt"), "{why}");

        let (mut f, _) = Fetch::start(m, ext, Duration::ZERO);
        assert_eq!(f.on_tick(Duration::from_secs(1)), None);
        let again = f.on_tick(REQUEST_TIMEOUT).expect("asks again");
        assert_eq!(again.offset, 0);
        let Step::Failed(why) =
            f.on_reply(BlobReply::NotFound { digest: m.digest }, REQUEST_TIMEOUT)
        else {
            panic!()
        };
        assert!(why.contains("does not hold"), "{why}");
        let oversized = BlobReply::Chunk {
            digest: m.digest,
            offset: 0,
            total: 100,
            data: vec![0; 101],
        };
        assert!(matches!(
            f.on_reply(oversized, REQUEST_TIMEOUT),
            Step::Failed(_)
        ));
    }
}
