//! Content-addressed module storage on disk: `DIR/blobs/<sha256 hex>`.
//!
//! A blob is accepted only if its bytes hash to the claimed digest and form a valid
//! WebAssembly module, so nothing broken is ever offered to the fleet.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
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
    /// Not a WebAssembly module.
    #[error("not a valid WebAssembly module: {0}")]
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

/// The hub's module store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// Checks that `bytes` is a WebAssembly module a Wasmfleet agent could run.
pub fn validate_module(bytes: &[u8]) -> Result<(), BlobError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(BlobError::InvalidModule(
            "missing the \\0asm magic header".into(),
        ));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(BlobError::InvalidModule(
            "this is a component or an unsupported binary version; a core module (WASI preview1) is required"
                .into(),
        ));
    }
    wasmparser::Validator::new()
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| BlobError::InvalidModule(e.to_string()))
}

impl BlobStore {
    /// A store rooted at `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            path: dir.into(),
            source,
        })?;
        Ok(BlobStore { dir: dir.into() })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.to_hex())
    }

    /// Size of the blob, if held.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Stores `bytes` under `expected` after checking the digest and the module.
    /// Written to a temporary file and renamed, so a full disk never leaves a partial blob.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<(), BlobError> {
        let actual = sha256(bytes);
        if actual != *expected {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        validate_module(bytes)?;
        let path = self.path(expected);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{}.tmp", expected.to_hex()));
        let io = |source| BlobError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, &path).map_err(|source| BlobError::Io { path, source })
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

    /// The whole blob, if held.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        match std::fs::read(self.path(digest)) {
            Ok(b) => Ok(Some(b)),
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
    use super::*;

    /// The smallest valid module: magic + version.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn stores_and_serves_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = sha256(EMPTY_MODULE);
        store.put(&d, EMPTY_MODULE).unwrap();
        assert_eq!(store.size(&d), Some(8));
        assert_eq!(
            store.read_range(&d, 4, 100).unwrap(),
            Some((8, vec![1, 0, 0, 0]))
        );
        assert_eq!(store.read_range(&d, 8, 1).unwrap(), None);
        assert_eq!(store.read_range(&Digest([0; 32]), 0, 1).unwrap(), None);
    }

    #[test]
    fn refuses_wrong_digest_and_non_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let err = store.put(&Digest([0; 32]), EMPTY_MODULE).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        let text = b"#!/bin/sh\necho hi\n";
        let err = store.put(&sha256(text), text).unwrap_err().to_string();
        assert!(err.contains("missing the \\0asm magic"), "{err}");
        let truncated = b"\0asm\x01\0\0\0\x01\x05";
        let err = store
            .put(&sha256(truncated), truncated)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("not a valid WebAssembly module"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing stored"
        );
    }
}
