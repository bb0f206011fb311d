//! What the application needs from a board: the link's bytes, a clock, the artifact flash and
//! the devices modules may use. Each board crate implements it over its own types.

use embedded_hal::digital::ErrorKind;
use embedded_hal::i2c;

/// An I2C bus as boards lend it (borrowed from the board).
pub type BoardI2c<'a> = dyn i2c::I2c<Error = i2c::ErrorKind> + 'a;

/// A board, as the main loop drives it.
pub trait Hardware {
    /// Board name, announced as the label `wasmfleet.dev/board`.
    const BOARD: &'static str;
    /// Milliseconds since boot.
    fn now_ms(&self) -> u64;
    /// Waits for an interrupt, at most until `deadline_ms`; returns at once if link bytes wait.
    fn sleep_until(&self, deadline_ms: u64);
    /// Reads what the link received (non-blocking); 0 when nothing waits.
    fn link_read(&mut self, buf: &mut [u8]) -> usize;
    /// Sends on the link (blocking).
    fn link_write(&mut self, bytes: &[u8]);
    /// Size of the artifact flash region, bytes.
    fn flash_len(&self) -> u32;
    /// Its erase unit, bytes.
    fn flash_sector(&self) -> u32;
    /// Reads `buf.len()` bytes at `offset` of the region.
    fn flash_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), &'static str>;
    /// Erases `offset .. offset + len` of the region (sector-aligned).
    fn flash_erase(&mut self, offset: u32, len: u32) -> Result<(), &'static str>;
    /// Writes `data` at `offset` of the region (erased before).
    fn flash_write(&mut self, offset: u32, data: &[u8]) -> Result<(), &'static str>;
    /// The region's bytes `offset .. offset + len`, in place.
    ///
    /// # Safety
    /// The caller must not erase or write that range while the slice, or a module loaded
    /// from it, is in use.
    unsafe fn flash_mapped(&self, offset: u32, len: u32) -> Result<&'static [u8], &'static str>;
    /// Devices offered to modules, in the names nodes announce them by (`i2c-1`, `gpio:17`).
    fn devices(&self) -> alloc::vec::Vec<alloc::string::String>;
    /// The I2C bus `name`.
    fn i2c(&mut self, name: &str) -> Option<&mut BoardI2c<'_>>;
    /// Whether pin `pin` exists.
    fn has_gpio(&self, pin: u32) -> bool;
    /// Reads pin `pin`.
    fn gpio_read(&mut self, pin: u32) -> Result<bool, ErrorKind>;
    /// Drives pin `pin`.
    fn gpio_write(&mut self, pin: u32, high: bool) -> Result<(), ErrorKind>;
    /// Heap bytes in use now and at most since boot.
    fn heap_used_peak(&self) -> (usize, usize);
    /// Writes a line to the board's debug console (not the link).
    fn debug(&mut self, line: &str);
}
