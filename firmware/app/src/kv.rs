//! Key-value stores of the node's deployments, in RAM: they outlive instances (a restart or an
//! update of a workload keeps its deployment's store) but not a device reset. A flash-backed
//! store over the board's NOR flash is the next step; until then the quota the runtime
//! enforces also bounds the RAM this takes.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use wasmfleet_fw_runtime::{KvError, KvStore};

/// All stores, by name (the deployment).
#[derive(Debug, Default)]
pub struct RamKv {
    stores: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl KvStore for RamKv {
    fn get(&mut self, store: &str, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, KvError> {
        let Some(value) = self.stores.get(store).and_then(|s| s.get(key)) else {
            return Ok(None);
        };
        let n = value.len().min(buf.len());
        buf[..n].copy_from_slice(&value[..n]);
        Ok(Some(value.len()))
    }

    fn set(&mut self, store: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.stores
            .entry(store.into())
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, store: &str, key: &[u8]) -> Result<bool, KvError> {
        Ok(self
            .stores
            .get_mut(store)
            .is_some_and(|s| s.remove(key).is_some()))
    }

    fn used(&mut self, store: &str) -> Result<u64, KvError> {
        Ok(self.stores.get(store).map_or(0, |s| {
            s.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
        }))
    }
}
