//! The on-disk module store: `DIR/blobs/<sha256 hex>`.
//!
//! Downloads go to `DIR/blobs/<hex>.part` and resume from its length, so a flaky link never
//! restarts a big module from zero. The whole file is checked against its SHA-256 before it is
//! renamed to `DIR/blobs/<hex>`: a file under its final name is always the right bytes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use wasmfleet_common::{digest, fsutil};
use wasmfleet_proto::Digest;

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
        let actual = digest::sha256_file(&part).map_err(|source| BlobError::Io {
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
            })?;
        fsutil::sync_dir(&self.dir);
        Ok(())
    }

    /// Deletes a partial download.
    pub fn discard_part(&self, digest: &Digest) {
        let _ = fs::remove_file(self.part_path(digest));
    }

    /// Stores complete bytes (a side-loaded module, tests), returning their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let digest = digest::sha256(bytes);
        let path = self.path(&digest);
        fsutil::write_atomic(&path, bytes).map_err(|source| BlobError::Io {
            digest,
            op: "write",
            path,
            source,
        })?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    #[test]
    fn store_resume_verify_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let digest = digest::sha256(&bytes);
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
