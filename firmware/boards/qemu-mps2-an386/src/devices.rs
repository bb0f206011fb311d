//! The device set guests see on this board: the Linux agent's simulated set (QEMU has no
//! sensors): I2C bus `i2c-1` with a BME280 at 0x76, an LED on GPIO 17 (its changes are logged
//! on the debug console) and a button on GPIO 27 (toggles every 3 s).
//!
//! Every bus reports plain [`ErrorKind`]s and every pin is infallible, on both boards, so the
//! runtime can take `&mut dyn I2c<Error = ErrorKind>` and `&mut dyn InputPin<Error =
//! Infallible>` without knowing the board.

use core::convert::Infallible;

use embedded_hal::digital::{InputPin, StatefulOutputPin};
use embedded_hal::i2c::{ErrorKind, I2c};
use wasmfleet_fw_board_common::sim;

pub use wasmfleet_fw_board_common::sim::{BUTTON_PIN, I2C_BUS, LED_PIN};

/// The board's I2C buses and GPIO lines.
#[derive(Debug)]
pub struct Devices {
    /// `i2c-1`: the simulated BME280.
    pub i2c1: sim::Bme280,
    /// GPIO 17: the simulated LED.
    pub led: sim::Led,
    /// GPIO 27: the simulated button.
    pub button: sim::Button,
}

impl Devices {
    /// The simulated set; its drift and button periods start now.
    pub(crate) fn new() -> Devices {
        Devices {
            i2c1: sim::Bme280::new(crate::now_ms),
            led: sim::Led::new(LED_PIN, log_led),
            button: sim::Button::new(crate::now_ms),
        }
    }

    /// The I2C bus called `name`, if the board has it.
    pub fn i2c(&mut self, name: &str) -> Option<&mut dyn I2c<Error = ErrorKind>> {
        (name == I2C_BUS).then_some(&mut self.i2c1 as _)
    }

    /// The output line `pin`, if the board has one.
    pub fn output(&mut self, pin: u32) -> Option<&mut dyn StatefulOutputPin<Error = Infallible>> {
        (pin == LED_PIN).then_some(&mut self.led as _)
    }

    /// The input line `pin`, if the board has one.
    pub fn input(&mut self, pin: u32) -> Option<&mut dyn InputPin<Error = Infallible>> {
        (pin == BUTTON_PIN).then_some(&mut self.button as _)
    }
}

fn log_led(pin: u32, high: bool) {
    crate::console::log(format_args!(
        "sim: LED {pin} -> {}",
        if high { "on" } else { "off" }
    ));
}
