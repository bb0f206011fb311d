//! [`Hardware`](crate::Hardware) for the board crates of this workspace, which all have the
//! same shape: `init() -> Board { uart, flash, devices }`, `now_ms`, `sleep_until`, a NOR flash
//! with `mapped`, `Devices` with `i2c`/`output`/`input`, `heap_stats` and a debug `log`. A
//! board's firmware binary is then one line of glue and [`crate::run`].

/// Defines `struct $name(board::Board)` and implements [`crate::Hardware`] for it over board
/// crate `$board` (an identifier: `use my_board_crate as board;` first).
#[macro_export]
macro_rules! board_hardware {
    ($name:ident, $board:ident) => {
        /// The board, as the firmware's main loop drives it.
        struct $name($board::Board);

        impl $crate::Hardware for $name {
            const BOARD: &'static str = $board::BOARD;

            fn now_ms(&self) -> u64 {
                $board::now_ms()
            }

            fn sleep_until(&self, deadline_ms: u64) {
                $board::sleep_until(deadline_ms);
            }

            fn link_read(&mut self, buf: &mut [u8]) -> usize {
                self.0.uart.read(buf)
            }

            fn link_write(&mut self, bytes: &[u8]) {
                self.0.uart.write_all(bytes);
            }

            fn flash_len(&self) -> u32 {
                use embedded_storage::nor_flash::ReadNorFlash as _;
                self.0.flash.capacity() as u32
            }

            fn flash_sector(&self) -> u32 {
                $board::ERASE_SIZE as u32
            }

            fn flash_read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), &'static str> {
                use embedded_storage::nor_flash::ReadNorFlash as _;
                self.0
                    .flash
                    .read(offset, buf)
                    .map_err(|_| "read out of range")
            }

            fn flash_erase(&mut self, offset: u32, len: u32) -> Result<(), &'static str> {
                use embedded_storage::nor_flash::NorFlash as _;
                self.0
                    .flash
                    .erase(offset, offset + len)
                    .map_err(|_| "erase out of range or unaligned")
            }

            fn flash_write(&mut self, offset: u32, data: &[u8]) -> Result<(), &'static str> {
                use embedded_storage::nor_flash::NorFlash as _;
                self.0
                    .flash
                    .write(offset, data)
                    .map_err(|_| "write out of range or unaligned")
            }

            unsafe fn flash_mapped(
                &self,
                offset: u32,
                len: u32,
            ) -> Result<&'static [u8], &'static str> {
                // SAFETY: forwarded; the caller keeps the range unchanged while it is in use.
                unsafe { self.0.flash.mapped(offset, len as usize) }
                    .map_err(|_| "range outside flash")
            }

            fn devices(&self) -> $crate::alloc::vec::Vec<$crate::alloc::string::String> {
                $crate::alloc::vec![
                    $board::I2C_BUS.into(),
                    $crate::alloc::format!("gpio:{}", $board::LED_PIN),
                    $crate::alloc::format!("gpio:{}", $board::BUTTON_PIN),
                ]
            }

            fn i2c(&mut self, name: &str) -> Option<&mut $crate::BoardI2c<'_>> {
                self.0.devices.i2c(name)
            }

            fn has_gpio(&self, pin: u32) -> bool {
                pin == $board::LED_PIN || pin == $board::BUTTON_PIN
            }

            fn gpio_read(&mut self, pin: u32) -> Result<bool, embedded_hal::digital::ErrorKind> {
                if let Some(out) = self.0.devices.output(pin) {
                    return out.is_set_high().map_err(|e| match e {});
                }
                match self.0.devices.input(pin) {
                    Some(input) => input.is_high().map_err(|e| match e {}),
                    None => Err(embedded_hal::digital::ErrorKind::Other),
                }
            }

            fn gpio_write(
                &mut self,
                pin: u32,
                high: bool,
            ) -> Result<(), embedded_hal::digital::ErrorKind> {
                match self.0.devices.output(pin) {
                    Some(out) => out
                        .set_state(embedded_hal::digital::PinState::from(high))
                        .map_err(|e| match e {}),
                    None => Err(embedded_hal::digital::ErrorKind::Other),
                }
            }

            fn heap_used_peak(&self) -> (usize, usize) {
                let s = $board::heap_stats();
                (s.used, s.peak)
            }

            fn debug(&mut self, line: &str) {
                $board::log(format_args!("{line}"));
            }
        }
    };
}
