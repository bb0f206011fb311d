//! SHA-256 content addresses ([`Digest`]) of bytes, readers and files.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use wasmfleet_proto::Digest;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// An incremental SHA-256, for data that arrives in pieces (uploads, chunked downloads).
#[derive(Debug, Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// SHA-256 of everything `reader` yields, read in 64 KiB pieces (never the whole file in
/// memory: modules can be large and devices small).
pub fn sha256_reader(mut reader: impl Read) -> io::Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<Digest> {
    sha256_reader(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn known_vector_three_ways() {
        assert_eq!(sha256(b"abc").to_hex(), ABC);
        assert_eq!(sha256_reader(&b"abc"[..]).unwrap().to_hex(), ABC);
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish().to_hex(), ABC);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap().to_hex(), ABC);
    }
}
