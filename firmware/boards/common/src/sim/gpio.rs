//! The simulated LED (an output that reports its changes) and button (an input that toggles
//! on a timer), behind the embedded-hal 1.0 digital traits like real pins.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin, StatefulOutputPin};

use super::Clock;

/// How often the simulated button toggles.
pub const BUTTON_PERIOD_MS: u64 = 3_000;

/// An LED: remembers its level and calls `on_change(pin, high)` whenever it changes, which is
/// how a board without a real LED shows it (the QEMU board logs it on its console).
#[derive(Debug)]
pub struct Led {
    pin: u32,
    high: bool,
    on_change: fn(u32, bool),
}

impl Led {
    /// An LED on line `pin`, off (low).
    pub fn new(pin: u32, on_change: fn(u32, bool)) -> Led {
        Led {
            pin,
            high: false,
            on_change,
        }
    }

    fn set(&mut self, high: bool) {
        if high != self.high {
            (self.on_change)(self.pin, high);
        }
        self.high = high;
    }
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set(true);
        Ok(())
    }
}

impl StatefulOutputPin for Led {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.high)
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.high)
    }
}

/// A button that is released for [`BUTTON_PERIOD_MS`], pressed (high) for the next, and so
/// on, counted from its creation.
#[derive(Debug)]
pub struct Button {
    clock: Clock,
    origin_ms: u64,
}

impl Button {
    /// A button whose first period (released) starts now.
    pub fn new(clock: Clock) -> Button {
        Button {
            clock,
            origin_ms: clock(),
        }
    }

    fn level(&self) -> bool {
        let n = (self.clock)().saturating_sub(self.origin_ms) / BUTTON_PERIOD_MS;
        n % 2 == 1
    }
}

impl ErrorType for Button {
    type Error = Infallible;
}

impl InputPin for Button {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.level())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    static NOW: AtomicU64 = AtomicU64::new(500);
    static CHANGES: AtomicU32 = AtomicU32::new(0);

    #[test]
    fn button_toggles_every_period_and_led_reports_changes_only() {
        let mut button = Button::new(|| NOW.load(Ordering::Relaxed));
        assert!(button.is_low().unwrap(), "starts released");
        NOW.store(500 + BUTTON_PERIOD_MS, Ordering::Relaxed);
        assert!(button.is_high().unwrap());
        NOW.store(500 + 2 * BUTTON_PERIOD_MS + 1, Ordering::Relaxed);
        assert!(button.is_low().unwrap());

        let mut led = Led::new(17, |pin, _| {
            assert_eq!(pin, 17);
            CHANGES.fetch_add(1, Ordering::Relaxed);
        });
        led.set_low().unwrap();
        led.set_high().unwrap();
        led.set_high().unwrap();
        assert!(led.is_set_high().unwrap());
        led.toggle().unwrap();
        assert_eq!(CHANGES.load(Ordering::Relaxed), 2);
    }
}
