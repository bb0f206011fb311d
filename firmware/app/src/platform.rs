//! The runtime's [`Platform`] for every instance of the node: a cheap handle to the one shared
//! board, log buffer, uplink queue and key-value store. The main loop never holds the shared
//! cell while it calls into an instance, so host calls always find it free.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use embedded_hal::i2c::{self, ErrorType, I2c, Operation};
use wasmfleet_fw_core::{FlashKv, LogBuffer};
use wasmfleet_fw_runtime::{
    Busy, DeviceError, DynI2c, Edges, KvError, KvStore, LogLevel, Platform,
};
use wasmfleet_proto::Stream;
use wasmfleet_proto::link::Uplink;
use wasmfleet_proto::topic::app_topic;

use crate::hardware::Hardware;
use crate::kv::{KvPart, Stores};

/// Application messages waiting for the link; more and modules see `BUSY`.
pub const OUTBOX: usize = 16;

/// What all instances share.
pub struct Shared<H> {
    /// The board.
    pub hw: H,
    /// Output of all workloads, bounded.
    pub logs: LogBuffer,
    /// Application messages to send.
    pub outbox: Vec<Uplink>,
    /// Key-value stores by deployment (none if the flash could not be read at boot).
    pub kv: Option<FlashKv>,
    /// Where the KV part starts in the flash region.
    pub kv_base: u32,
    /// Unix milliseconds at boot, once the gateway said (0 before).
    pub unix_at_boot: u64,
    /// Watched pins: last level seen and how many watches.
    pub watched: BTreeMap<u32, (bool, u32)>,
}

/// One instance's handle.
pub struct NodePlatform<H> {
    shared: Rc<RefCell<Shared<H>>>,
    kv: KvHandle<H>,
    i2c: Vec<(String, I2cHandle<H>)>,
}

impl<H: Hardware> NodePlatform<H> {
    /// A handle lending out the I2C buses named in `i2c`.
    pub fn new(shared: &Rc<RefCell<Shared<H>>>, i2c: &[String]) -> NodePlatform<H> {
        NodePlatform {
            shared: shared.clone(),
            kv: KvHandle(shared.clone()),
            i2c: i2c
                .iter()
                .map(|name| {
                    let handle = I2cHandle {
                        shared: shared.clone(),
                        name: name.clone(),
                    };
                    (name.clone(), handle)
                })
                .collect(),
        }
    }
}

impl<H: Hardware + 'static> Platform for NodePlatform<H> {
    fn now_ms(&mut self) -> u64 {
        self.shared.borrow().hw.now_ms()
    }

    fn wall_ns(&mut self) -> Option<i64> {
        let s = self.shared.borrow();
        (s.unix_at_boot > 0).then(|| {
            let ms = s.unix_at_boot.saturating_add(s.hw.now_ms());
            i64::try_from(ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000)
        })
    }

    fn delay_ns(&mut self, ns: u32) {
        // Millisecond clock: wait whole milliseconds, at least the time asked.
        let s = self.shared.borrow();
        let until = s.hw.now_ms() + u64::from(ns).div_ceil(1_000_000);
        while s.hw.now_ms() < until {
            core::hint::spin_loop();
        }
    }

    fn log(&mut self, workload: &str, level: LogLevel, line: &str) {
        let mut s = self.shared.borrow_mut();
        let ts = s.unix_at_boot.saturating_add(s.hw.now_ms());
        let stream = if level.is_stderr() {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let text = format!("{}{line}", level.prefix());
        s.logs.push(workload, stream, ts, &text);
    }

    fn publish(&mut self, namespace: &str, topic: &str, payload: &[u8]) -> Result<(), Busy> {
        let mut s = self.shared.borrow_mut();
        if s.outbox.len() >= OUTBOX {
            return Err(Busy);
        }
        s.outbox.push(Uplink::AppPublish {
            topic: app_topic(namespace, topic),
            payload: payload.to_vec(),
        });
        Ok(())
    }

    fn kv(&mut self) -> Option<&mut dyn KvStore> {
        // No store (the flash was unreadable at boot): modules that use KV are refused.
        self.shared.borrow().kv.as_ref()?;
        Some(&mut self.kv)
    }

    fn has_gpio(&mut self, pin: u32) -> bool {
        self.shared.borrow().hw.has_gpio(pin)
    }

    fn gpio_read(&mut self, pin: u32) -> Result<bool, DeviceError> {
        self.shared
            .borrow_mut()
            .hw
            .gpio_read(pin)
            .map_err(|_| DeviceError::Io)
    }

    fn gpio_write(&mut self, pin: u32, high: bool) -> Result<(), DeviceError> {
        self.shared
            .borrow_mut()
            .hw
            .gpio_write(pin, high)
            .map_err(|_| DeviceError::Io)
    }

    fn gpio_watch(&mut self, pin: u32, _edges: Edges) -> Result<(), DeviceError> {
        let mut s = self.shared.borrow_mut();
        let level = s.hw.gpio_read(pin).map_err(|_| DeviceError::Io)?;
        let entry = s.watched.entry(pin).or_insert((level, 0));
        entry.1 += 1;
        Ok(())
    }

    fn gpio_unwatch(&mut self, pin: u32) {
        let mut s = self.shared.borrow_mut();
        if let Some(entry) = s.watched.get_mut(&pin) {
            entry.1 -= 1;
            if entry.1 == 0 {
                s.watched.remove(&pin);
            }
        }
    }

    fn i2c(&mut self, name: &str) -> Option<&mut DynI2c> {
        self.i2c
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h as &mut DynI2c)
    }
}

/// A bus by name, borrowed from the board for each transaction.
struct I2cHandle<H> {
    shared: Rc<RefCell<Shared<H>>>,
    name: String,
}

impl<H: Hardware> ErrorType for I2cHandle<H> {
    type Error = i2c::ErrorKind;
}

impl<H: Hardware> I2c for I2cHandle<H> {
    fn transaction(
        &mut self,
        address: u8,
        ops: &mut [Operation<'_>],
    ) -> Result<(), i2c::ErrorKind> {
        let mut s = self.shared.borrow_mut();
        let bus = s.hw.i2c(&self.name).ok_or(i2c::ErrorKind::Other)?;
        bus.transaction(address, ops)
    }
}

/// The node's key-value stores, borrowed for each call.
struct KvHandle<H>(Rc<RefCell<Shared<H>>>);

impl<H: Hardware> KvHandle<H> {
    /// Runs `f` on the stores and their flash.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Stores<'_, H>) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut shared = self.0.borrow_mut();
        let Shared {
            hw, kv, kv_base, ..
        } = &mut *shared;
        let kv = kv.as_mut().ok_or(KvError::Io)?;
        let mut stores = Stores {
            kv,
            flash: KvPart { hw, base: *kv_base },
        };
        f(&mut stores)
    }
}

impl<H: Hardware> KvStore for KvHandle<H> {
    fn get(&mut self, store: &str, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, KvError> {
        self.with(|s| s.get(store, key, buf))
    }

    fn set(&mut self, store: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.with(|s| s.set(store, key, value))
    }

    fn delete(&mut self, store: &str, key: &[u8]) -> Result<bool, KvError> {
        self.with(|s| s.delete(store, key))
    }

    fn used(&mut self, store: &str) -> Result<u64, KvError> {
        self.with(|s| s.used(store))
    }
}
