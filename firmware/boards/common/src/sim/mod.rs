//! The simulated device set of the Linux agent's `--devices sim`, for boards without the real
//! parts (QEMU), so the same guest modules run unchanged:
//!
//! - I2C bus `i2c-1` with a BME280 at 0x76 ([`Bme280`]): 18–30 °C on a 40 s sine starting at
//!   24 °C and rising, 1013 hPa, 45 %RH, at the register level so the `bme280` driver crate
//!   reads it.
//! - GPIO 17, an LED ([`Led`]): an output that reports every change.
//! - GPIO 27, a button ([`Button`]): an input that toggles every 3 s, starting released.
//!
//! Time comes from a [`Clock`], the board's monotonic millisecond counter.

mod bme280;
mod gpio;

pub use bme280::{BME280_ADDRESS, Bme280, DRIFT_PERIOD_MS, temperature_at};
pub use gpio::{BUTTON_PERIOD_MS, Button, Led};

/// The board's monotonic clock: milliseconds since boot.
pub type Clock = fn() -> u64;

/// Name of the simulated I2C bus, as on the Linux agent.
pub const I2C_BUS: &str = "i2c-1";
/// GPIO line of the simulated LED.
pub const LED_PIN: u32 = 17;
/// GPIO line of the simulated button.
pub const BUTTON_PIN: u32 = 27;
