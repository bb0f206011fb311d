//! The emulated NOR flash: the 256 KiB `EMUFLASH` region of memory.x (code SSRAM outside the
//! program), behaving like the nRF52840's internal flash so storage code written against one
//! works on the other: 4 KiB erase pages, erase sets every bit (0xFF), writes are 4-byte
//! aligned words that can only clear bits (written ∧ old), reads are byte-granular.
//!
//! A cold QEMU start is a factory-fresh part: the region is erased on the first
//! [`RamFlash::take`]. A warm reset (`SCB::sys_reset`) keeps RAM and hence the contents, as a
//! real flash keeps them across reboots; a marker in the non-initialised `.uninit` section
//! tells the two apart.

use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash, check_erase,
    check_read, check_write,
};

/// Erase granularity: an nRF52840 flash page.
pub const ERASE_SIZE: usize = 4096;
/// Write granularity: one 32-bit word, as the nRF52840 NVMC writes.
pub const WRITE_SIZE: usize = 4;

unsafe extern "C" {
    static __wasmfleet_storage_start: u8;
    static __wasmfleet_storage_end: u8;
}

/// Survives warm resets: QEMU neither loads nor clears `.uninit`.
#[unsafe(link_section = ".uninit.wasmfleet_flash")]
static mut FORMATTED: MaybeUninit<u32> = MaybeUninit::uninit();
const FORMATTED_MAGIC: u32 = 0x5746_4C48; // "WFLH"

/// The emulated flash; [`crate::init`] hands out the only one.
#[derive(Debug)]
pub struct RamFlash {
    base: *mut u8,
    len: usize,
    /// Whether `take` found the contents of a previous run (warm reset).
    kept: bool,
}

impl RamFlash {
    /// Claims the region, erasing it on a cold start. Called once, by `init`.
    pub(crate) fn take() -> RamFlash {
        let start = addr_of!(__wasmfleet_storage_start) as usize;
        let end = addr_of!(__wasmfleet_storage_end) as usize;
        let mut flash = RamFlash {
            base: start as *mut u8,
            len: end - start,
            kept: false,
        };
        let marker = addr_of_mut!(FORMATTED).cast::<u32>();
        // SAFETY: `FORMATTED` is a plain word of RAM only touched here, once, during `init`;
        // reading it uninitialised as a u32 is fine (any bit pattern is a valid u32).
        flash.kept = unsafe { marker.read_volatile() } == FORMATTED_MAGIC;
        if !flash.kept {
            flash.fill(0, flash.len, 0xFF);
            // SAFETY: as above.
            unsafe { marker.write_volatile(FORMATTED_MAGIC) };
        }
        flash
    }

    /// Whether the contents survived from before a warm reset (false: freshly erased).
    pub fn kept_from_before_reset(&self) -> bool {
        self.kept
    }

    /// The address of offset 0, for diagnostics.
    pub fn base_address(&self) -> usize {
        self.base as usize
    }

    /// The written bytes at `offset..offset + len` in place, e.g. for
    /// `Module::deserialize_raw` to run an artifact from flash without copying it to RAM.
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
        // SAFETY: in bounds (checked); the region is ours for the program's life, and the
        // caller promises no erase/write of it while the slice lives.
        Ok(unsafe { core::slice::from_raw_parts(self.base.add(offset as usize), len) })
    }

    fn fill(&mut self, offset: usize, len: usize, byte: u8) {
        // SAFETY: callers pass a checked range inside the region, which only we access.
        unsafe { core::ptr::write_bytes(self.base.add(offset), byte, len) }
    }
}

impl ErrorType for RamFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        check_read(self, offset, bytes.len())?;
        // SAFETY: in bounds (checked); `bytes` is a distinct RAM buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(offset as usize),
                bytes.as_mut_ptr(),
                bytes.len(),
            )
        };
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        check_erase(self, from, to)?;
        self.fill(from as usize, (to - from) as usize, 0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        check_write(self, offset, bytes.len())?;
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (checked); only this driver touches the region.
            unsafe {
                let cell = self.base.add(offset as usize + i);
                // Programming NOR only pulls bits to 0; erased (1) bits take the new value.
                cell.write_volatile(cell.read_volatile() & b);
            }
        }
        Ok(())
    }
}

/// Rewriting a word clears further bits, as on the nRF52840 (which allows two writes per word
/// between erases).
impl MultiwriteNorFlash for RamFlash {}
