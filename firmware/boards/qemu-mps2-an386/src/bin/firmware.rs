//! The Wasmfleet firmware for QEMU's mps2-an386: the node's main loop
//! ([`wasmfleet_fw_app::run`]) over this board's UART0 link, emulated flash and simulated
//! devices.
//!
//!   cd firmware && cargo build --release
//!   scripts/qemu.sh PORT        # UART0 on 127.0.0.1:PORT
//!   edge-agent --node gw --data DIR --mcu mcu-1=tcp:127.0.0.1:PORT
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use cortex_m_rt::entry;
use embedded_hal::digital::ErrorKind;
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use wasmfleet_fw_app::{BoardI2c, Hardware, Offer};
use wasmfleet_fw_qemu_mps2_an386::{self as board, BUTTON_PIN, Board, I2C_BUS, LED_PIN};

/// Workloads' memory: what the heap has left beside wasmtime (engine, module, store, Pulley
/// stack) and the node's own state.
const WORKLOAD_MEMORY: u64 = 96 * 1024;

struct Qemu(Board);

impl Hardware for Qemu {
    const BOARD: &'static str = board::BOARD;

    fn now_ms(&self) -> u64 {
        board::now_ms()
    }

    fn sleep_until(&self, deadline_ms: u64) {
        board::sleep_until(deadline_ms);
    }

    fn link_read(&mut self, buf: &mut [u8]) -> usize {
        self.0.uart.read(buf)
    }

    fn link_write(&mut self, bytes: &[u8]) {
        self.0.uart.write_all(bytes);
    }

    fn flash_len(&self) -> u32 {
        self.0.flash.capacity() as u32
    }

    fn flash_sector(&self) -> u32 {
        board::ERASE_SIZE as u32
    }

    fn flash_erase(&mut self, offset: u32, len: u32) -> Result<(), &'static str> {
        self.0
            .flash
            .erase(offset, offset + len)
            .map_err(|_| "erase out of range or unaligned")
    }

    fn flash_write(&mut self, offset: u32, data: &[u8]) -> Result<(), &'static str> {
        self.0
            .flash
            .write(offset, data)
            .map_err(|_| "write out of range or unaligned")
    }

    unsafe fn flash_mapped(&self, offset: u32, len: u32) -> Result<&'static [u8], &'static str> {
        // SAFETY: forwarded; the caller keeps the range unchanged while it is in use.
        unsafe { self.0.flash.mapped(offset, len as usize) }.map_err(|_| "range outside flash")
    }

    fn devices(&self) -> Vec<String> {
        vec![
            I2C_BUS.into(),
            format!("gpio:{LED_PIN}"),
            format!("gpio:{BUTTON_PIN}"),
        ]
    }

    fn i2c(&mut self, name: &str) -> Option<&mut BoardI2c<'_>> {
        self.0.devices.i2c(name)
    }

    fn has_gpio(&self, pin: u32) -> bool {
        pin == LED_PIN || pin == BUTTON_PIN
    }

    fn gpio_read(&mut self, pin: u32) -> Result<bool, ErrorKind> {
        if let Some(out) = self.0.devices.output(pin) {
            return out.is_set_high().map_err(|e| match e {});
        }
        match self.0.devices.input(pin) {
            Some(input) => input.is_high().map_err(|e| match e {}),
            None => Err(ErrorKind::Other),
        }
    }

    fn gpio_write(&mut self, pin: u32, high: bool) -> Result<(), ErrorKind> {
        use embedded_hal::digital::PinState;
        match self.0.devices.output(pin) {
            Some(out) => out.set_state(PinState::from(high)).map_err(|e| match e {}),
            None => Err(ErrorKind::Other),
        }
    }

    fn heap_used_peak(&self) -> (usize, usize) {
        let s = board::heap_stats();
        (s.used, s.peak)
    }

    fn debug(&mut self, line: &str) {
        board::log(format_args!("{line}"));
    }
}

#[entry]
fn main() -> ! {
    let b = board::init();
    board::log(format_args!("wasmfleet firmware on {}", board::BOARD));
    wasmfleet_fw_app::run(
        Qemu(b),
        Offer {
            memory_bytes: WORKLOAD_MEMORY,
            max_workloads: 2,
        },
    )
}
