//! What the runtime needs from the board: a clock, a log sink, the uplink for application
//! messages, and optionally a key-value store, GPIO pins and I2C/SPI devices.
//!
//! The runtime does every check the ABI prescribes (ranges, permissions, quotas, limits)
//! before it calls the board, so an implementation only moves bytes and reports what the
//! hardware said. Every method but four has a default meaning "this node has none".

use embedded_hal::{i2c, spi};

/// An I2C bus as the runtime drives it: 7-bit addresses, errors by kind. Wrap a HAL's bus in
/// [`ErasedI2c`] to get one.
pub type DynI2c = dyn i2c::I2c<Error = i2c::ErrorKind>;

/// An SPI device (bus plus chip select) as the runtime drives it: bytes, errors by kind. Wrap
/// a HAL's device in [`ErasedSpi`] to get one.
pub type DynSpi = dyn spi::SpiDevice<u8, Error = spi::ErrorKind>;

/// The board under the runtime. One value per instance (wasmtime stores own their data): a
/// board running several instances implements it for a cheap handle to its shared hardware
/// (for example a `&'static` cell), and gives each instance its own handle of a shared bus
/// (`embedded-hal-bus`'s `RefCellDevice` or `CriticalSectionDevice`), which is what
/// [`Platform::i2c`] and [`Platform::spi`] lend out.
pub trait Platform {
    /// Milliseconds since an arbitrary start; never decreases. Timers run on it.
    fn now_ms(&mut self) -> u64;

    /// Nanoseconds on the same clock as [`Platform::now_ms`], for `clock_monotonic_ns`. The
    /// default has millisecond resolution; a board with a finer timer overrides it.
    fn now_ns(&mut self) -> u64 {
        self.now_ms().saturating_mul(1_000_000)
    }

    /// Nanoseconds since the Unix epoch, if the node knows the time (an RTC, or time learnt
    /// from its gateway). Without it `clock_wall_ns` returns 0, as the Linux agent does for a
    /// clock before the epoch.
    fn wall_ns(&mut self) -> Option<i64> {
        None
    }

    /// Busy-waits at least `ns` nanoseconds (at most one second: the ABI caps `delay_ns`).
    /// On a single-threaded node this pauses everything, not only the instance.
    fn delay_ns(&mut self, ns: u32);

    /// One log line of `workload`. `line` is the module's text (invalid UTF-8 replaced);
    /// [`LogLevel::prefix`] and [`LogLevel::is_stderr`] give the Linux agent's rendering.
    fn log(&mut self, workload: &str, level: LogLevel, line: &str);

    /// Publishes `payload` on the module's `topic` (relative to `namespace`: the broker
    /// topic is `wf/v1/app/{namespace}/{topic}`), QoS 1, not retained. The runtime has
    /// checked the grant, the topic, the size and the rate; `Err(Busy)` means the uplink
    /// cannot take it now and the module sees `BUSY`.
    fn publish(&mut self, namespace: &str, topic: &str, payload: &[u8]) -> Result<(), Busy>;

    /// The node's persistent key-value storage, if it has any. Without it, a module that
    /// imports a KV function is refused at instantiation.
    fn kv(&mut self) -> Option<&mut dyn KvStore> {
        None
    }

    /// Whether the node has GPIO pin `pin` (`NOT_FOUND` otherwise).
    fn has_gpio(&mut self, _pin: u32) -> bool {
        false
    }

    /// The level of `pin` (an output reads back the level last written).
    fn gpio_read(&mut self, _pin: u32) -> Result<bool, DeviceError> {
        Err(DeviceError::NotFound)
    }

    /// Drives `pin` high or low, making it an output.
    fn gpio_write(&mut self, _pin: u32, _high: bool) -> Result<(), DeviceError> {
        Err(DeviceError::NotFound)
    }

    /// Starts reporting `edges` of `pin` (making it an input where the hardware allows): the
    /// board hands each edge to [`crate::Instance::deliver_gpio`] from its main loop, through
    /// a bounded queue such as [`crate::EdgeQueue`]. Reporting more edges than asked is
    /// harmless: the runtime filters them. A pin that cannot watch returns `Unsupported`.
    fn gpio_watch(&mut self, _pin: u32, _edges: Edges) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported)
    }

    /// Stops reporting edges of `pin`.
    fn gpio_unwatch(&mut self, _pin: u32) {}

    /// The I2C bus named `name` (as granted in `capabilities.i2c`), if the node has it.
    fn i2c(&mut self, _name: &str) -> Option<&mut DynI2c> {
        None
    }

    /// The SPI device named `name` (as granted in `capabilities.spi`), if the node has it.
    fn spi(&mut self, _name: &str) -> Option<&mut DynSpi> {
        None
    }
}

/// A log line's level, as the module passed it (0 error … 4 trace; anything above is trace,
/// anything below error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0.
    Error,
    /// 1.
    Warn,
    /// 2.
    Info,
    /// 3.
    Debug,
    /// 4.
    Trace,
}

impl LogLevel {
    /// The level of the ABI's `level` argument.
    pub fn from_abi(level: i32) -> LogLevel {
        match level {
            i32::MIN..=0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            3 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    /// The prefix the Linux agent writes before the line (`modules/ABI.md`, `log`).
    pub fn prefix(self) -> &'static str {
        match self {
            LogLevel::Error => "error: ",
            LogLevel::Warn => "warn: ",
            LogLevel::Info => "",
            LogLevel::Debug => "debug: ",
            LogLevel::Trace => "trace: ",
        }
    }

    /// Whether the Linux agent ships the line as stderr (error and warn) rather than stdout.
    pub fn is_stderr(self) -> bool {
        self <= LogLevel::Warn
    }
}

/// The uplink cannot take another message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Which edges of a pin a module watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges {
    /// Low to high.
    pub rising: bool,
    /// High to low.
    pub falling: bool,
}

impl Edges {
    /// The edges of the ABI's `edges` argument (1 rising, 2 falling, 3 both).
    pub fn from_abi(edges: i32) -> Option<Edges> {
        (1..=3).contains(&edges).then_some(Edges {
            rising: edges & 1 != 0,
            falling: edges & 2 != 0,
        })
    }

    /// Whether a change to `level` is one of these edges.
    pub fn includes(self, level: bool) -> bool {
        match level {
            true => self.rising,
            false => self.falling,
        }
    }
}

/// What a GPIO pin reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The node has no such pin (`NOT_FOUND`).
    #[error("no such device")]
    NotFound,
    /// The pin cannot do this, e.g. watch edges (`UNSUPPORTED`).
    #[error("not supported by this device")]
    Unsupported,
    /// The hardware failed (`IO`).
    #[error("device I/O failed")]
    Io,
}

/// A failed KV storage operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The storage itself is full, whatever the module's quota (`NO_SPACE`).
    #[error("storage full")]
    NoSpace,
    /// Reading or writing the storage failed (`IO`).
    #[error("storage I/O failed")]
    Io,
}

/// Persistent key-value storage, one store per deployment name. The runtime enforces keys,
/// value sizes and `capabilities.kv`; the store persists. A change must be durable when
/// `set`/`delete` return `Ok`, as the ABI promises modules.
pub trait KvStore {
    /// Copies the first `min(len, buf.len())` bytes of `key`'s value in `store` into `buf`
    /// and returns its full length `len`; `None` if absent.
    fn get(&mut self, store: &str, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, KvError>;

    /// Sets `key` to `value` in `store`.
    fn set(&mut self, store: &str, key: &[u8], value: &[u8]) -> Result<(), KvError>;

    /// Deletes `key` from `store`; `false` if it was absent.
    fn delete(&mut self, store: &str, key: &[u8]) -> Result<bool, KvError>;

    /// Bytes `store` uses: the sum of its keys' and values' lengths (what the quota counts).
    fn used(&mut self, store: &str) -> Result<u64, KvError>;
}

/// Adapts any `embedded_hal` I2C bus to [`DynI2c`], keeping only each error's kind.
#[derive(Debug)]
pub struct ErasedI2c<T>(pub T);

impl<T: i2c::I2c> i2c::ErrorType for ErasedI2c<T> {
    type Error = i2c::ErrorKind;
}

impl<T: i2c::I2c> i2c::I2c for ErasedI2c<T> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [i2c::Operation<'_>],
    ) -> Result<(), i2c::ErrorKind> {
        use i2c::Error as _;
        self.0
            .transaction(address, operations)
            .map_err(|e| e.kind())
    }
}

/// Adapts any `embedded_hal` SPI device to [`DynSpi`], keeping only each error's kind.
#[derive(Debug)]
pub struct ErasedSpi<T>(pub T);

impl<T: spi::SpiDevice> spi::ErrorType for ErasedSpi<T> {
    type Error = spi::ErrorKind;
}

impl<T: spi::SpiDevice> spi::SpiDevice for ErasedSpi<T> {
    fn transaction(
        &mut self,
        operations: &mut [spi::Operation<'_, u8>],
    ) -> Result<(), spi::ErrorKind> {
        use spi::Error as _;
        self.0.transaction(operations).map_err(|e| e.kind())
    }
}
