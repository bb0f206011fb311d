//! Digital pins (capability `gpio`) as embedded-hal 1.0 pins, so pin-driving crates work
//! unchanged. Pins are numbered as the node offers them (`gpio:17`).

use crate::error::{Error, Result};
use crate::sys;
use embedded_hal::digital::{ErrorType, InputPin, OutputPin, PinState, StatefulOutputPin};

/// Which edges [`Input::watch`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Edges {
    /// Low to high.
    Rising = 1,
    /// High to low.
    Falling = 2,
    /// Both.
    Both = 3,
}

/// A pin read as an input.
#[derive(Debug)]
pub struct Input {
    pin: u32,
}

impl Input {
    /// The pin `pin`. Nothing is checked until the first read or watch.
    pub fn new(pin: u32) -> Input {
        Input { pin }
    }

    /// The pin number.
    pub fn pin(&self) -> u32 {
        self.pin
    }

    /// Calls [`App::on_gpio`](crate::App::on_gpio) on each of `edges`. A watch keeps the
    /// instance alive. `Err(Unsupported)` if the pin cannot watch edges.
    pub fn watch(&self, edges: Edges) -> Result<()> {
        // SAFETY: plain integers.
        Error::check(unsafe { sys::gpio_watch(self.pin as i32, edges as i32) }).map(drop)
    }

    /// Stops watching.
    pub fn unwatch(&self) -> Result<()> {
        // SAFETY: plain integer.
        Error::check(unsafe { sys::gpio_unwatch(self.pin as i32) }).map(drop)
    }

    /// The current level: `true` is high.
    pub fn read(&self) -> Result<bool> {
        // SAFETY: plain integer.
        Error::check(unsafe { sys::gpio_read(self.pin as i32) }).map(|level| level != 0)
    }
}

impl ErrorType for Input {
    type Error = Error;
}

impl InputPin for Input {
    fn is_high(&mut self) -> Result<bool> {
        self.read()
    }

    fn is_low(&mut self) -> Result<bool> {
        self.read().map(|high| !high)
    }
}

/// A pin driven as an output. It remembers the level it last wrote, for
/// [`StatefulOutputPin`] (the host has no call to read an output's setting back).
#[derive(Debug)]
pub struct Output {
    pin: u32,
    high: bool,
}

impl Output {
    /// Makes `pin` an output at level `initial` (writing it is what makes it an output).
    pub fn new(pin: u32, initial: PinState) -> Result<Output> {
        let mut out = Output { pin, high: false };
        out.write(initial == PinState::High)?;
        Ok(out)
    }

    /// The pin number.
    pub fn pin(&self) -> u32 {
        self.pin
    }

    /// Drives the pin high (`true`) or low.
    pub fn write(&mut self, high: bool) -> Result<()> {
        // SAFETY: plain integers.
        Error::check(unsafe { sys::gpio_write(self.pin as i32, high as i32) })?;
        self.high = high;
        Ok(())
    }

    /// The level last written.
    pub fn level(&self) -> PinState {
        PinState::from(self.high)
    }
}

impl ErrorType for Output {
    type Error = Error;
}

impl OutputPin for Output {
    fn set_low(&mut self) -> Result<()> {
        self.write(false)
    }

    fn set_high(&mut self) -> Result<()> {
        self.write(true)
    }
}

impl StatefulOutputPin for Output {
    fn is_set_high(&mut self) -> Result<bool> {
        Ok(self.high)
    }

    fn is_set_low(&mut self) -> Result<bool> {
        Ok(!self.high)
    }
}
