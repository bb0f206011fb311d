//! The node's key-value stores: [`wasmfleet_fw_core::FlashKv`] in the last [`KV_REGION`] bytes
//! of the board's flash, so a module's store survives instance restarts, updates and device
//! resets, as on Linux.

use wasmfleet_fw_core::{FlashKv, KvFlash, KvFlashError};
use wasmfleet_fw_runtime::{KvError, KvStore};

use crate::hardware::Hardware;

/// Flash kept for key-value stores at the end of the region (two halves of 8 KiB: the log and
/// its compaction target). Every deployment's `capabilities.kv` together must fit a half.
pub const KV_REGION: u32 = 16 * 1024;

/// The KV part of the board's flash, at offset `base` of its region.
pub struct KvPart<'a, H> {
    /// The board.
    pub hw: &'a mut H,
    /// Where the KV part starts in the flash region.
    pub base: u32,
}

impl<H: Hardware> KvFlash for KvPart<'_, H> {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), KvFlashError> {
        self.hw
            .flash_read(self.base + offset, buf)
            .map_err(|_| KvFlashError)
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), KvFlashError> {
        self.hw
            .flash_write(self.base + offset, data)
            .map_err(|_| KvFlashError)
    }

    fn erase(&mut self, offset: u32, len: u32) -> Result<(), KvFlashError> {
        self.hw
            .flash_erase(self.base + offset, len)
            .map_err(|_| KvFlashError)
    }
}

/// The stores and the board they live on, for one call.
pub struct Stores<'a, H> {
    /// The replayed stores.
    pub kv: &'a mut FlashKv,
    /// Their flash.
    pub flash: KvPart<'a, H>,
}

fn error(e: wasmfleet_fw_core::kv::KvError) -> KvError {
    match e {
        wasmfleet_fw_core::kv::KvError::Full => KvError::NoSpace,
        wasmfleet_fw_core::kv::KvError::Io => KvError::Io,
    }
}

impl<H: Hardware> KvStore for Stores<'_, H> {
    fn get(&mut self, store: &str, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, KvError> {
        Ok(self.kv.get(store, key).map(|value| {
            let n = value.len().min(buf.len());
            buf[..n].copy_from_slice(&value[..n]);
            value.len()
        }))
    }

    fn set(&mut self, store: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.kv
            .set(&mut self.flash, store, key, value)
            .map_err(error)
    }

    fn delete(&mut self, store: &str, key: &[u8]) -> Result<bool, KvError> {
        self.kv.delete(&mut self.flash, store, key).map_err(error)
    }

    fn used(&mut self, store: &str) -> Result<u64, KvError> {
        Ok(self.kv.used(store))
    }
}
