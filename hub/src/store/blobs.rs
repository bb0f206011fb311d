//! Content-addressed module storage on disk: `DIR/blobs/<sha256 hex>`.
//!
//! Uploads stream into a uniquely named temporary file (never the request body in memory),
//! hashed as they arrive. A blob is stored only if its bytes hash to the claimed digest and
//! pass the caller's admission check, by an atomic rename followed by a directory sync, so
//! concurrent uploads of one module cannot corrupt each other, a crash or a full disk never
//! leaves a partial blob under its final name, and uploading a module that is already stored
//! succeeds without doing anything.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use wasmfleet_common::digest::Hasher;
use wasmfleet_common::fsutil;
use wasmfleet_proto::Digest;

/// Why a blob was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes hash to something else.
    #[error("upload does not match its digest: expected sha256:{expected}, got sha256:{actual}")]
    DigestMismatch {
        /// Digest named by the uploader.
        expected: Digest,
        /// Digest of the bytes received.
        actual: Digest,
    },
    /// Larger than the hub accepts.
    #[error("upload is larger than the limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// Not a module agents can run.
    #[error("{0}")]
    InvalidModule(String),
    /// Disk trouble (full, permissions…).
    #[error("blob store I/O error at {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What a completed upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The blob is new.
    Created,
    /// The blob was already stored (by this upload's twin, or earlier).
    Existed,
}

/// The hub's module store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// An upload in progress: a temporary file being filled and hashed. Dropped unfinished, its
/// file is deleted.
#[derive(Debug)]
pub struct Upload {
    tmp: NamedTempFile,
    hasher: Hasher,
    len: u64,
    max: u64,
}

impl Upload {
    /// Appends bytes of the body.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.len += bytes.len() as u64;
        if self.len > self.max {
            return Err(BlobError::TooLarge { max: self.max });
        }
        self.hasher.update(bytes);
        let path = self.tmp.path().to_path_buf();
        self.tmp
            .write_all(bytes)
            .map_err(|source| BlobError::Io { path, source })
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl BlobStore {
    /// A store rooted at `dir` (created if missing). Temporary files a crash left behind are
    /// removed.
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        let io = |source| BlobError::Io {
            path: dir.into(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(BlobStore { dir: dir.into() })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Size of the blob, if held.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Starts an upload of at most `max` bytes.
    pub fn begin(&self, max: u64) -> Result<Upload, BlobError> {
        let tmp = fsutil::temp_in(&self.dir).map_err(|source| BlobError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(Upload {
            tmp,
            hasher: Hasher::new(),
            len: 0,
            max,
        })
    }

    /// Finishes an upload claimed to be `expected`: checks the digest, and unless the blob is
    /// already stored, runs `admit` on the bytes and stores them. Blocking (hashing is done,
    /// but `admit` may compile): call from a blocking context.
    pub fn finish(
        &self,
        upload: Upload,
        expected: &Digest,
        admit: impl FnOnce(&[u8]) -> Result<(), String>,
    ) -> Result<Stored, BlobError> {
        let Upload {
            mut tmp, hasher, ..
        } = upload;
        let actual = hasher.finish();
        if actual != *expected {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        let path = self.path(expected);
        if path.is_file() {
            return Ok(Stored::Existed);
        }
        let tmp_path = tmp.path().to_path_buf();
        let io = |source| BlobError::Io {
            path: tmp_path.clone(),
            source,
        };
        let mut bytes = Vec::new();
        tmp.seek(SeekFrom::Start(0)).map_err(io)?;
        tmp.read_to_end(&mut bytes).map_err(io)?;
        admit(&bytes).map_err(BlobError::InvalidModule)?;
        drop(bytes);
        fsutil::persist(tmp, &path).map_err(|source| BlobError::Io { path, source })?;
        Ok(Stored::Created)
    }

    /// Stores complete bytes (tests and tools): an upload in one piece.
    pub fn put(
        &self,
        expected: &Digest,
        bytes: &[u8],
        admit: impl FnOnce(&[u8]) -> Result<(), String>,
    ) -> Result<Stored, BlobError> {
        let mut upload = self.begin(u64::MAX)?;
        upload.write(bytes)?;
        self.finish(upload, expected, admit)
    }

    /// Reads up to `len` bytes at `offset`: `(total size, bytes)`, or `None` if the blob is
    /// not held or `offset` is past its end.
    pub fn read_range(
        &self,
        digest: &Digest,
        offset: u64,
        len: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, BlobError> {
        let path = self.path(digest);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        let io = |source| BlobError::Io {
            path: path.clone(),
            source,
        };
        let total = file.metadata().map_err(io)?.len();
        if offset >= total && total > 0 {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = Vec::with_capacity(len as usize);
        file.take(u64::from(len))
            .read_to_end(&mut buf)
            .map_err(io)?;
        Ok(Some((total, buf)))
    }

    /// Opens the whole blob for reading, if held.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<std::fs::File>, BlobError> {
        match std::fs::File::open(self.path(digest)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io {
                path: self.path(digest),
                source,
            }),
        }
    }

    /// The whole blob, if held (modules the hub compiles; bounded by the upload limit).
    pub fn read_all(&self, digest: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        match std::fs::read(self.path(digest)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io {
                path: self.path(digest),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_common::digest::sha256;

    use super::*;

    /// The smallest valid module: magic + version.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn ok(_: &[u8]) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn stores_and_serves_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = sha256(EMPTY_MODULE);
        assert_eq!(store.put(&d, EMPTY_MODULE, ok).unwrap(), Stored::Created);
        assert_eq!(store.size(&d), Some(8));
        assert_eq!(
            store.read_range(&d, 4, 100).unwrap(),
            Some((8, vec![1, 0, 0, 0]))
        );
        assert_eq!(store.read_range(&d, 8, 1).unwrap(), None);
        assert_eq!(store.read_range(&Digest([0; 32]), 0, 1).unwrap(), None);
        assert_eq!(
            store
                .put(&d, EMPTY_MODULE, |_| panic!("not checked again"))
                .unwrap(),
            Stored::Existed
        );
    }

    #[test]
    fn refuses_wrong_digest_oversize_and_inadmissible_leaving_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let err = store.put(&Digest([0; 32]), EMPTY_MODULE, ok).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        let text = b"#!/bin/sh\necho hi\n";
        let err = store
            .put(&sha256(text), text, |_| {
                Err("missing the \\0asm magic header".into())
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing the \\0asm magic"), "{err}");
        let mut up = store.begin(4).unwrap();
        assert!(matches!(
            up.write(b"12345"),
            Err(BlobError::TooLarge { max: 4 })
        ));
        drop(up);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing stored, no temporary file left"
        );
    }

    #[test]
    fn racing_uploads_of_one_module_all_succeed_with_one_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut bytes = EMPTY_MODULE.to_vec();
        bytes.resize(4 << 20, 7);
        let d = sha256(&bytes);
        let outcomes: Vec<Stored> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut up = store.begin(64 << 20).unwrap();
                        for piece in bytes.chunks(64 * 1024) {
                            up.write(piece).unwrap();
                        }
                        store.finish(up, &d, ok).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(outcomes.contains(&Stored::Created), "{outcomes:?}");
        assert_eq!(std::fs::read(dir.path().join(d.to_hex())).unwrap(), bytes);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "one file, no leftovers"
        );
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-abc"), b"partial").unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
