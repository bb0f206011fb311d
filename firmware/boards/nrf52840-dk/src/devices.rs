//! The device set guests see on the DK: I2C bus `i2c-1` on TWIM0 (P0.26 SDA, P0.27 SCL, the
//! Arduino-header I2C pins, 100 kHz), LED1 as GPIO 13 and button 1 as GPIO 11.
//!
//! Levels are logical, as guests expect from the simulated board: the DK's LEDs and buttons
//! are wired active-low, so "high" here means LED lit (pin driven low) and button pressed
//! (pin pulled low). Every bus reports plain [`ErrorKind`]s and every pin is infallible, on
//! both boards, so the runtime can take `&mut dyn I2c<Error = ErrorKind>` and
//! `&mut dyn InputPin<Error = Infallible>` without knowing the board.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin, StatefulOutputPin};
use embedded_hal::i2c::{self, ErrorKind, I2c, Operation};
use nrf52840_hal::gpio::{Input, Level, Output, Pin, PullUp, PushPull};
use nrf52840_hal::pac::TWIM0;
use nrf52840_hal::twim::{self, Frequency, Twim};

/// Name of the I2C bus, as on the Linux agent.
pub const I2C_BUS: &str = "i2c-1";
/// GPIO line of LED1 (P0.13).
pub const LED_PIN: u32 = 13;
/// GPIO line of button 1 (P0.11).
pub const BUTTON_PIN: u32 = 11;

/// The board's I2C buses and GPIO lines.
#[derive(Debug)]
pub struct Devices {
    /// `i2c-1`: TWIM0.
    pub i2c1: I2cBus,
    /// GPIO 13: LED1.
    pub led: Led,
    /// GPIO 11: button 1.
    pub button: Button,
}

/// The pins `Devices` takes from port 0.
pub(crate) struct DevicePins {
    pub sda: Pin<Input<nrf52840_hal::gpio::Floating>>,
    pub scl: Pin<Input<nrf52840_hal::gpio::Floating>>,
    pub led: Pin<nrf52840_hal::gpio::Disconnected>,
    pub button: Pin<nrf52840_hal::gpio::Disconnected>,
}

impl Devices {
    /// Configures TWIM0 and the pins; the LED starts off. Called once, by `init`.
    pub(crate) fn new(twim0: TWIM0, pins: DevicePins) -> Devices {
        let bus = Twim::new(
            twim0,
            twim::Pins {
                scl: pins.scl,
                sda: pins.sda,
            },
            Frequency::K100,
        );
        Devices {
            i2c1: I2cBus(bus),
            led: Led {
                pin: pins.led.into_push_pull_output(Level::High),
            },
            button: Button {
                pin: pins.button.into_pullup_input(),
            },
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

/// TWIM0 with its errors reduced to [`ErrorKind`] (nrf-hal's own error adds DMA details a
/// guest cannot act on).
pub struct I2cBus(Twim<TWIM0>);

impl core::fmt::Debug for I2cBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("I2cBus(TWIM0)")
    }
}

impl i2c::ErrorType for I2cBus {
    type Error = ErrorKind;
}

impl I2c for I2cBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), ErrorKind> {
        self.0
            .transaction(address, operations)
            .map_err(|e| i2c::Error::kind(&e))
    }
}

/// LED1: lit when set high (the pin is driven low).
pub struct Led {
    pin: Pin<Output<PushPull>>,
}

impl core::fmt::Debug for Led {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Led(P0.{LED_PIN})")
    }
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.pin.set_high()
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.pin.set_low()
    }
}

impl StatefulOutputPin for Led {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        self.pin.is_set_low()
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        self.pin.is_set_high()
    }
}

/// Button 1: high while pressed (the pin is pulled low).
pub struct Button {
    pin: Pin<Input<PullUp>>,
}

impl core::fmt::Debug for Button {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Button(P0.{BUTTON_PIN})")
    }
}

impl ErrorType for Button {
    type Error = Infallible;
}

impl InputPin for Button {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        self.pin.is_low()
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        self.pin.is_high()
    }
}
