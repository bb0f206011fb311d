//! Board layer for the nRF52840-DK (PCA10056: nRF52840, Cortex-M4F at 64 MHz, 1 MiB flash,
//! 256 KiB RAM), on nrf-hal in blocking mode.
//!
//! [`init`] brings the board up once and hands the main loop everything it drives, with the
//! same shape as the QEMU board's:
//!
//! - [`Uart0`]: UARTE0 on the DK's VCOM (P0.06 TXD, P0.08 RXD), the link to the gateway,
//!   interrupt-buffered receive, blocking send.
//! - [`now_ms`] / [`sleep_until`]: an RTC1 millisecond clock and the low-power idle wait.
//! - [`NvmcFlash`]: the last 256 KiB of the internal flash (artifacts, key-value store),
//!   with [`NvmcFlash::mapped`] to run artifacts in place.
//! - [`Devices`]: TWIM0 as `i2c-1` (P0.26 SDA, P0.27 SCL), LED1 as GPIO 13, button 1 as
//!   GPIO 11.
//! - [`heap_stats`] / [`stack_stats`]: the heap's and stack's high-water marks.
//! - [`log`]: the debug console on RTT.
//!
//! Memory map (memory.x): program 768 KiB from 0x0000_0000, storage 256 KiB at 0x000C_0000,
//! RAM 256 KiB at 0x2000_0000 holding the [`HEAP_SIZE`] heap, [`uart::RX_CAPACITY`] +
//! [`uart::TX_CHUNK`] bytes of UART buffers, the [`CONSOLE_BUFFER`] RTT buffer and the stack.
#![no_std]

mod clock;
mod console;
mod devices;
#[cfg(feature = "fatal-handlers")]
mod fatal;
mod flash;
mod heap;
pub mod uart;

use nrf52840_hal::clocks::{Clocks, LfOscConfiguration};
use nrf52840_hal::gpio::p0;
use nrf52840_hal::pac;

pub use clock::{TICK_HZ, now_ms, sleep_until};
pub use console::{CONSOLE_BUFFER, Console, log};
pub use devices::{BUTTON_PIN, Button, Devices, I2C_BUS, I2cBus, LED_PIN, Led};
pub use flash::{ERASE_SIZE, NvmcFlash, WRITE_SIZE};
pub use heap::{HEAP_SIZE, heap_stats, reset_heap_peak};
pub use uart::Uart0;
pub use wasmfleet_fw_board_common::{HeapStats, StackStats, stack_stats};

/// The board's name, as the node reports it.
pub const BOARD: &str = "nrf52840-dk";

/// Everything the main loop drives, from [`init`].
#[derive(Debug)]
pub struct Board {
    /// The link UART.
    pub uart: Uart0,
    /// The storage region of the internal flash.
    pub flash: NvmcFlash,
    /// The I2C bus and GPIO lines.
    pub devices: Devices,
}

/// Brings the board up: heap, RTT console, crystal oscillators, RTC clock, UARTE0 receive
/// interrupt, TWIM0, LED and button, flash.
///
/// # Panics
/// When called twice (the peripherals can be taken only once).
pub fn init() -> Board {
    let p = pac::Peripherals::take().expect("board::init called twice");
    heap::init();
    console::init();
    // The external 32 MHz crystal keeps the UART's baud rate accurate; the 32.768 kHz crystal
    // drives the RTC. Both start here and stay on.
    let _clocks = Clocks::new(p.CLOCK)
        .enable_ext_hfosc()
        .set_lfclk_src_external(LfOscConfiguration::NoExternalNoBypass)
        .start_lfclk();
    clock::init(p.RTC1);
    let port0 = p0::Parts::new(p.P0);
    let uart = Uart0::new(
        p.UARTE0,
        uart::UartPins {
            txd: port0.p0_06,
            rxd: port0.p0_08,
            #[cfg(feature = "uart-flow-control")]
            rts: port0.p0_05,
            #[cfg(feature = "uart-flow-control")]
            cts: port0.p0_07,
        },
    );
    let devices = Devices::new(
        p.TWIM0,
        devices::DevicePins {
            sda: port0.p0_26.into_floating_input().degrade(),
            scl: port0.p0_27.into_floating_input().degrade(),
            led: port0.p0_13.degrade(),
            button: port0.p0_11.degrade(),
        },
    );
    Board {
        uart,
        flash: NvmcFlash::new(p.NVMC),
        devices,
    }
}
