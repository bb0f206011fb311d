//! Hardware the node offers to modules, behind `embedded-hal` 1.0 traits: I2C buses, SPI
//! devices and GPIO pins, by the names nodes announce (`i2c-1`, `spidev0.0`, `gpio:17`).
//!
//! Two sets exist, chosen with `--devices`: `sim` ([`sim`]), a simulated BME280 sensor, an LED
//! and a button, so demos and tests run on any machine; and `linux` ([`linux`]), the real
//! `/dev/i2c-*`, `/dev/spidev*` and GPIO character devices. The host API ([`crate::runtime`])
//! reaches hardware only through [`Devices`]; it does not know which set it has.
pub mod linux;
pub mod sim;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::i2c::{ErrorKind as I2cErrorKind, Operation as I2cOp};
use embedded_hal::spi::{ErrorKind as SpiErrorKind, Operation as SpiOp};
use tokio::sync::mpsc;

/// Why a device operation failed, in the host ABI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// I2C: no acknowledge of the address or a data byte.
    #[error("no acknowledge")]
    NoAcknowledge,
    /// I2C: arbitration lost.
    #[error("arbitration lost")]
    ArbitrationLoss,
    /// Any other bus error.
    #[error("bus error")]
    Bus,
    /// The operation is not possible on this device (writing an input-only pin...).
    #[error("not supported by this device")]
    Unsupported,
    /// The host's device access failed (an ioctl, a closed file).
    #[error("device I/O failed")]
    Io,
}

impl From<I2cErrorKind> for DeviceError {
    fn from(kind: I2cErrorKind) -> DeviceError {
        match kind {
            I2cErrorKind::NoAcknowledge(_) => DeviceError::NoAcknowledge,
            I2cErrorKind::ArbitrationLoss => DeviceError::ArbitrationLoss,
            I2cErrorKind::Bus | I2cErrorKind::Overrun => DeviceError::Bus,
            _ => DeviceError::Io,
        }
    }
}

impl From<SpiErrorKind> for DeviceError {
    fn from(_: SpiErrorKind) -> DeviceError {
        DeviceError::Bus
    }
}

/// An I2C bus: any `embedded_hal::i2c::I2c` implementation (7-bit addresses).
pub trait I2cBus: Send {
    /// One transaction: repeated starts between operations, one stop at the end.
    fn transaction(&mut self, address: u8, ops: &mut [I2cOp<'_>]) -> Result<(), DeviceError>;
}

impl<T: embedded_hal::i2c::I2c + Send> I2cBus for T {
    fn transaction(&mut self, address: u8, ops: &mut [I2cOp<'_>]) -> Result<(), DeviceError> {
        use embedded_hal::i2c::Error;
        embedded_hal::i2c::I2c::transaction(self, address, ops).map_err(|e| e.kind().into())
    }
}

/// An SPI device (bus plus chip select): any `embedded_hal::spi::SpiDevice`.
pub trait SpiDev: Send {
    /// One transaction with chip select held throughout.
    fn transaction(&mut self, ops: &mut [SpiOp<'_, u8>]) -> Result<(), DeviceError>;
}

impl<T: embedded_hal::spi::SpiDevice + Send> SpiDev for T {
    fn transaction(&mut self, ops: &mut [SpiOp<'_, u8>]) -> Result<(), DeviceError> {
        use embedded_hal::spi::Error;
        embedded_hal::spi::SpiDevice::transaction(self, ops).map_err(|e| e.kind().into())
    }
}

/// Which edges a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges {
    /// Low to high.
    pub rising: bool,
    /// High to low.
    pub falling: bool,
}

impl Edges {
    /// Whether a change to `level` is one of these edges.
    pub fn matches(self, level: bool) -> bool {
        (level && self.rising) || (!level && self.falling)
    }
}

/// A pin edge: `(pin, new level)`.
pub type Edge = (u32, bool);

/// Where a watch delivers a pin's edges: the watching module's bounded queue, and which edges
/// it asked for.
#[derive(Debug)]
pub struct EdgeSink {
    pin: u32,
    edges: Edges,
    tx: mpsc::Sender<Edge>,
    dropped: u64,
}

impl EdgeSink {
    /// Edges of `pin` matching `edges`, into `tx`.
    pub fn new(pin: u32, edges: Edges, tx: mpsc::Sender<Edge>) -> EdgeSink {
        EdgeSink {
            pin,
            edges,
            tx,
            dropped: 0,
        }
    }

    /// Offers a change to `level`: skipped unless it is a wanted edge; dropped when the queue
    /// is full (warned about on the first drop and every 1000th). False once the module is
    /// gone.
    pub fn offer(&mut self, level: bool) -> bool {
        if !self.edges.matches(level) {
            return true;
        }
        match self.tx.try_send((self.pin, level)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped % 1000 == 1 {
                    tracing::warn!(
                        pin = self.pin,
                        dropped = self.dropped,
                        "GPIO edges dropped: a module's event queue is full"
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Stops a watch when dropped.
pub struct WatchGuard(Box<dyn FnOnce() + Send>);

impl WatchGuard {
    /// A guard that runs `stop` when dropped.
    pub fn new(stop: impl FnOnce() + Send + 'static) -> WatchGuard {
        WatchGuard(Box::new(stop))
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let stop = std::mem::replace(&mut self.0, Box::new(|| {}));
        stop();
    }
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchGuard")
    }
}

/// One GPIO line.
pub trait GpioPin: Send {
    /// The current level (an output reads back what was written).
    fn read(&mut self) -> Result<bool, DeviceError>;
    /// Drives the pin (making it an output where the hardware allows).
    fn write(&mut self, high: bool) -> Result<(), DeviceError>;
    /// Reports edges to `sink` until the guard is dropped.
    fn watch(&mut self, sink: EdgeSink) -> Result<WatchGuard, DeviceError>;
}

/// Shared handle to one device; instances on one node share the hardware.
pub type Shared<T> = Arc<Mutex<T>>;

/// Locks a device, recovering from a panic of a previous holder (the hardware is still there).
pub fn lock<T: ?Sized>(d: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    d.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The node's devices.
#[derive(Default, Clone)]
pub struct Devices {
    i2c: BTreeMap<String, Shared<Box<dyn I2cBus>>>,
    spi: BTreeMap<String, Shared<Box<dyn SpiDev>>>,
    gpio: BTreeMap<u32, Shared<Box<dyn GpioPin>>>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Devices {
    /// No hardware.
    pub fn none() -> Devices {
        Devices::default()
    }

    /// Adds an I2C bus under `name` (e.g. `i2c-1`).
    pub fn add_i2c(&mut self, name: &str, bus: impl I2cBus + 'static) {
        self.i2c
            .insert(name.to_string(), Arc::new(Mutex::new(Box::new(bus))));
    }

    /// Adds an SPI device under `name` (e.g. `spidev0.0`).
    pub fn add_spi(&mut self, name: &str, dev: impl SpiDev + 'static) {
        self.spi
            .insert(name.to_string(), Arc::new(Mutex::new(Box::new(dev))));
    }

    /// Adds GPIO line `pin`.
    pub fn add_gpio(&mut self, pin: u32, line: impl GpioPin + 'static) {
        self.gpio.insert(pin, Arc::new(Mutex::new(Box::new(line))));
    }

    /// The I2C bus `name`.
    pub fn i2c(&self, name: &str) -> Option<Shared<Box<dyn I2cBus>>> {
        self.i2c.get(name).cloned()
    }

    /// The SPI device `name`.
    pub fn spi(&self, name: &str) -> Option<Shared<Box<dyn SpiDev>>> {
        self.spi.get(name).cloned()
    }

    /// GPIO line `pin`.
    pub fn gpio(&self, pin: u32) -> Option<Shared<Box<dyn GpioPin>>> {
        self.gpio.get(&pin).cloned()
    }

    /// What the node announces: `i2c-1`, `spidev0.0`, `gpio:17`, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.i2c.keys().chain(self.spi.keys()).cloned().collect();
        names.extend(self.gpio.keys().map(|p| format!("gpio:{p}")));
        names.sort();
        names
    }
}
