//! Board layer for QEMU's `mps2-an386` machine (Arm MPS2 with the AN386 FPGA image: a
//! Cortex-M4F at 25 MHz), the stand-in for a real microcontroller in tests.
//!
//! [`init`] brings the board up once and hands the main loop everything it drives:
//!
//! - [`Uart0`]: the link to the gateway (QEMU's first `-serial`), interrupt-buffered receive,
//!   blocking send.
//! - [`now_ms`] / [`sleep_until`]: a SysTick millisecond clock and the idle wait.
//! - [`RamFlash`]: 256 KiB of emulated NOR flash (artifacts, key-value store), with
//!   [`RamFlash::mapped`] to run artifacts in place.
//! - [`Devices`]: the simulated `i2c-1` BME280, LED 17 and button 27.
//! - [`heap_stats`] / [`stack_stats`]: the heap's and stack's high-water marks.
//! - [`log`]: the debug console on UART1 (QEMU's second `-serial`).
//!
//! Memory map (memory.x): program in SSRAM1 at 0x0000_0000 (3.75 MiB), emulated flash at
//! 0x003C_0000 (256 KiB), RAM 256 KiB at 0x2000_0000 (the nRF52840's size) holding the
//! [`HEAP_SIZE`] heap, [`uart::RX_CAPACITY`] bytes of receive ring and the stack.
#![no_std]

mod clock;
mod cmsdk_uart;
mod console;
mod devices;
#[cfg(feature = "fatal-handlers")]
mod fatal;
mod flash;
mod heap;
pub mod uart;
mod vectors;

pub use clock::{CORE_CLOCK_HZ, now_ms, sleep_until};
pub use console::{Console, log};
pub use devices::{BUTTON_PIN, Devices, I2C_BUS, LED_PIN};
pub use flash::{ERASE_SIZE, RamFlash, WRITE_SIZE};
pub use heap::{HEAP_SIZE, heap_stats, reset_heap_peak};
pub use uart::Uart0;
pub use wasmfleet_fw_board_common::{HeapStats, StackStats, stack_stats};

/// The board's name, as the node reports it.
pub const BOARD: &str = "qemu-mps2-an386";

/// Everything the main loop drives, from [`init`].
#[derive(Debug)]
pub struct Board {
    /// The link UART.
    pub uart: Uart0,
    /// The emulated NOR flash.
    pub flash: RamFlash,
    /// The simulated I2C bus and GPIO lines.
    pub devices: Devices,
}

/// Brings the board up: heap, console, millisecond clock, UART0 receive interrupt, flash and
/// devices.
///
/// # Panics
/// When called twice (the core peripherals can be taken only once).
pub fn init() -> Board {
    let core = cortex_m::Peripherals::take().expect("board::init called twice");
    heap::init();
    console::init();
    clock::init(core.SYST);
    Board {
        uart: Uart0::new(),
        flash: RamFlash::take(),
        devices: Devices::new(),
    }
}
