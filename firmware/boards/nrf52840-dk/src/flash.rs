//! The storage region of the internal flash (memory.x `STORAGE`: the last 256 KiB, 64 pages
//! of 4 KiB) through the NVMC, as a NOR flash: erase a 4 KiB page to 0xFF, write aligned
//! 32-bit words that can only clear bits, read any byte (flash is memory-mapped).
//!
//! The CPU stalls while the NVMC works, since it fetches code from the same flash: about
//! 85 ms per page erase, 41 µs per word write (nRF52840 PS, NVMC electrical specification).
//! Interrupts wait meanwhile, so erase while the link is quiet (e.g. before acknowledging the
//! chunk that needs the room), or enable the `uart-flow-control` feature.
//!
//! nrf-hal's `Nvmc` owns its region as `&'static mut [u8]`, which rules out handing out
//! `&'static [u8]` views of written artifacts, so this is a small driver of its own.

use core::ptr::addr_of;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash, check_erase,
    check_read, check_write,
};
use nrf52840_hal::pac::NVMC;

/// Erase granularity: one flash page.
pub const ERASE_SIZE: usize = 4096;
/// Write granularity: one 32-bit word.
pub const WRITE_SIZE: usize = 4;

unsafe extern "C" {
    static __wasmfleet_storage_start: u8;
    static __wasmfleet_storage_end: u8;
}

/// The storage region; [`crate::init`] hands out the only one.
pub struct NvmcFlash {
    nvmc: NVMC,
    base: usize,
    len: usize,
}

impl core::fmt::Debug for NvmcFlash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvmcFlash")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

impl NvmcFlash {
    /// Claims the NVMC and the storage region. Called once, by `init`.
    pub(crate) fn new(nvmc: NVMC) -> NvmcFlash {
        let base = addr_of!(__wasmfleet_storage_start) as usize;
        let end = addr_of!(__wasmfleet_storage_end) as usize;
        debug_assert!(base.is_multiple_of(ERASE_SIZE) && end.is_multiple_of(ERASE_SIZE));
        NvmcFlash {
            nvmc,
            base,
            len: end - base,
        }
    }

    /// The address of offset 0, for diagnostics.
    pub fn base_address(&self) -> usize {
        self.base
    }

    /// The written bytes at `offset..offset + len` in place (flash is memory-mapped), e.g. for
    /// `Module::deserialize_raw` to run an artifact without copying it to RAM.
    ///
    /// # Safety
    /// The range must not be erased or written while the returned slice (or anything built
    /// on it) is in use: the slice promises unchanging bytes, and flash can change under it.
    pub unsafe fn mapped(
        &self,
        offset: u32,
        len: usize,
    ) -> Result<&'static [u8], NorFlashErrorKind> {
        check_read(self, offset, len)?;
        // SAFETY: in bounds (checked) of a region linked out of the program and owned by this
        // driver; the caller promises no erase/write of it while the slice lives.
        Ok(unsafe { core::slice::from_raw_parts((self.base + offset as usize) as *const u8, len) })
    }

    fn wait_ready(&self) {
        while self.nvmc.ready.read().ready().is_busy() {
            core::hint::spin_loop();
        }
    }
}

impl ErrorType for NvmcFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for NvmcFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_read(self, offset, bytes.len())?;
        for (i, b) in bytes.iter_mut().enumerate() {
            // SAFETY: in bounds (checked); volatile because the NVMC changes flash behind the
            // compiler's back.
            *b = unsafe { ((self.base + offset as usize + i) as *const u8).read_volatile() };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for NvmcFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        check_erase(self, from, to)?;
        self.nvmc.config.write(|w| w.wen().een());
        for page in (from..to).step_by(ERASE_SIZE) {
            self.wait_ready();
            // SAFETY: a page address inside our region, which holds no code (memory.x).
            self.nvmc
                .erasepage()
                .write(|w| unsafe { w.bits((self.base + page as usize) as u32) });
        }
        self.wait_ready();
        self.nvmc.config.write(|w| w.wen().ren());
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_write(self, offset, bytes.len())?;
        self.nvmc.config.write(|w| w.wen().wen());
        let (words, _) = bytes.as_chunks::<WRITE_SIZE>(); // no remainder: checked above
        for (i, word) in words.iter().enumerate() {
            let addr = self.base + offset as usize + i * WRITE_SIZE;
            let value = u32::from_le_bytes(*word);
            self.wait_ready();
            // SAFETY: an aligned word inside our region with writes enabled; the NVMC programs
            // it (clearing bits only).
            unsafe { (addr as *mut u32).write_volatile(value) };
        }
        self.wait_ready();
        self.nvmc.config.write(|w| w.wen().ren());
        Ok(())
    }
}

/// The nRF52840 allows two writes per word between erases; each clears further bits.
impl MultiwriteNorFlash for NvmcFlash {}
