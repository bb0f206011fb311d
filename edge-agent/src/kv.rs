//! The persistent key-value store of the host API: one per deployment on a node, shared by
//! its replicas there, surviving agent restarts and `kill -9`.
//!
//! The whole store is small (bounded by `capabilities.kv`, typically a few KiB), so every
//! change rewrites it atomically (`common::fsutil`: temporary file, fsync, rename, directory
//! fsync): when `kv_set` returns, the change is on disk, and a crash leaves the old or the new
//! store, never a torn one. File format: `WFKV1\n`, then per entry a `u32` LE key length, the
//! key, a `u32` LE value length, the value.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use wasmfleet_common::fsutil;

const MAGIC: &[u8] = b"WFKV1\n";

/// Why a KV operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The change would take the store past its quota.
    #[error("KV store over its quota of {quota} bytes")]
    NoSpace {
        /// The quota.
        quota: u64,
    },
    /// The store file could not be written or read.
    #[error("KV store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The store file is not a KV store (damaged by something other than the agent).
    #[error("KV store {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One deployment's store.
#[derive(Debug)]
pub struct Kv {
    path: PathBuf,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Kv {
    /// Opens the store at `path` (empty if the file does not exist).
    pub fn open(path: &Path) -> Result<Kv, KvError> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| KvError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(KvError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Kv {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Bytes used: keys plus values.
    pub fn used(&self) -> u64 {
        self.entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// Sets `key` to `value` and makes it durable, if the store stays within `quota` bytes
    /// (or does not grow). On failure nothing changes.
    pub fn set(&mut self, key: &[u8], value: &[u8], quota: u64) -> Result<(), KvError> {
        if self.get(key) == Some(value) {
            return Ok(());
        }
        let old = self.get(key).map_or(0, |v| key.len() + v.len()) as u64;
        let new = (key.len() + value.len()) as u64;
        let used = self.used();
        if new > old && used - old + new > quota {
            return Err(KvError::NoSpace { quota });
        }
        let previous = self.entries.insert(key.to_vec(), value.to_vec());
        self.persist().inspect_err(|_| match previous {
            Some(v) => {
                self.entries.insert(key.to_vec(), v);
            }
            None => {
                self.entries.remove(key);
            }
        })
    }

    /// Deletes `key` durably; false if it was absent.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, KvError> {
        let Some(previous) = self.entries.remove(key) else {
            return Ok(false);
        };
        self.persist()
            .inspect_err(|_| {
                self.entries.insert(key.to_vec(), previous);
            })
            .map(|()| true)
    }

    fn persist(&self) -> Result<(), KvError> {
        let mut out = MAGIC.to_vec();
        for (k, v) in &self.entries {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend(k);
            out.extend((v.len() as u32).to_le_bytes());
            out.extend(v);
        }
        fsutil::write_atomic(&self.path, &out).map_err(|source| KvError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, &'static str> {
    let mut rest = bytes.strip_prefix(MAGIC).ok_or("no WFKV1 header")?;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, &'static str> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or("truncated length")?;
        let len = u32::from_le_bytes(*len) as usize;
        let data = tail.get(..len).ok_or("truncated entry")?;
        *rest = &tail[len..];
        Ok(data.to_vec())
    };
    let mut entries = BTreeMap::new();
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        entries.insert(k, v);
    }
    Ok(entries)
}

/// The stores of a node, by deployment, opened on first use and shared while in use.
#[derive(Debug, Clone)]
pub struct KvStores {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<String, Weak<Mutex<Kv>>>>>,
}

impl KvStores {
    /// Stores under `dir` (created when first written).
    pub fn new(dir: &Path) -> KvStores {
        KvStores {
            dir: dir.to_path_buf(),
            open: Arc::default(),
        }
    }

    /// The store of `deployment`, shared with its other instances on this node.
    pub fn open(&self, deployment: &str) -> Result<Arc<Mutex<Kv>>, KvError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kv) = open.get(deployment).and_then(Weak::upgrade) {
            return Ok(kv);
        }
        let kv = Arc::new(Mutex::new(Kv::open(&self.path(deployment))?));
        open.insert(deployment.to_string(), Arc::downgrade(&kv));
        Ok(kv)
    }

    fn path(&self, deployment: &str) -> PathBuf {
        self.dir.join(format!("{deployment}.kv"))
    }

    /// Deletes the stores of deployments not in `keep` (deleted deployments' data), except
    /// those an instance still holds (one running its `on_stop`): a later prune takes them.
    pub fn prune(&self, keep: &std::collections::HashSet<&str>) -> io::Result<usize> {
        let open: std::collections::HashSet<String> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(d, _)| d.clone())
            .collect();
        let mut removed = 0;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if path.extension().is_some_and(|e| e == "kv")
                && !keep.contains(stem)
                && !open.contains(stem)
            {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_keeps_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter.kv");
        let mut kv = Kv::open(&path).unwrap();
        kv.set(b"count", b"41", 16).unwrap();
        kv.set(b"count", b"42", 16).unwrap();
        kv.set(b"x", b"", 16).unwrap();
        assert!(matches!(
            kv.set(b"big", b"0123456789", 16),
            Err(KvError::NoSpace { quota: 16 })
        ));
        assert_eq!(kv.get(b"big"), None, "a refused set changes nothing");
        assert!(kv.delete(b"x").unwrap());
        assert!(!kv.delete(b"x").unwrap());
        let kv = Kv::open(&path).unwrap();
        assert_eq!(kv.get(b"count"), Some(&b"42"[..]));
        assert_eq!(kv.used(), 7);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.kv");
        std::fs::write(&path, b"WFKV1\n\x05\x00\x00\x00ab").unwrap();
        let err = Kv::open(&path).unwrap_err().to_string();
        assert!(err.contains("d.kv") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn replicas_share_a_store_and_prune_removes_the_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let stores = KvStores::new(dir.path());
        let a = stores.open("counter").unwrap();
        let b = stores.open("counter").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        a.lock().unwrap().set(b"k", b"v", 10).unwrap();
        stores
            .open("gone")
            .unwrap()
            .lock()
            .unwrap()
            .set(b"k", b"v", 10)
            .unwrap();
        let held = stores.open("held").unwrap();
        held.lock().unwrap().set(b"k", b"v", 10).unwrap();
        let keep = ["counter"].into_iter().collect();
        assert_eq!(stores.prune(&keep).unwrap(), 1, "not the one still held");
        drop(held);
        assert_eq!(stores.prune(&keep).unwrap(), 1);
        assert!(dir.path().join("counter.kv").exists());
    }
}
