//! A mock board and helpers: WAT modules precompiled for the host's Pulley target with the
//! runtime's own `config()`, and a `Platform` whose effects the tests can inspect.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use embedded_hal::i2c::{self, NoAcknowledgeSource};
use embedded_hal::spi;
use sha2::{Digest as _, Sha256};
use wasmfleet_fw_runtime::abi::{FUNCTIONS, IMPORT_MODULE, Val};
use wasmfleet_fw_runtime::{
    Busy, DeviceError, DynI2c, DynSpi, Edges, ErasedI2c, ErasedSpi, Fuel, Instance, KvError,
    KvStore, LogLevel, Module, Platform, Runtime, Workload, config, load,
};
use wasmfleet_proto::{Capabilities, ConfigEntry, Digest};

/// What the board saw and holds, shared between the test and the instance's platform.
#[derive(Debug, Default)]
pub struct World {
    pub now: u64,
    pub logs: Vec<(LogLevel, String)>,
    pub published: Vec<(String, String, Vec<u8>)>,
    pub kv: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    pub kv_writes: usize,
    pub pins: BTreeMap<u32, bool>,
    pub watching: BTreeMap<u32, Edges>,
    pub delays: Vec<u32>,
    pub bus_log: Vec<String>,
}

pub type Shared = Rc<RefCell<World>>;

/// The mock board: one per instance, sharing a [`World`].
pub struct Board {
    pub world: Shared,
    pub kv: Option<MemKv>,
    pub i2c: ErasedI2c<Sensor>,
    pub spi: ErasedSpi<Loopback>,
}

impl Board {
    pub fn new(world: &Shared) -> Board {
        Board {
            world: world.clone(),
            kv: Some(MemKv(world.clone())),
            i2c: ErasedI2c(Sensor(world.clone())),
            spi: ErasedSpi(Loopback(world.clone())),
        }
    }
}

impl Platform for Board {
    fn now_ms(&mut self) -> u64 {
        self.world.borrow().now
    }

    fn wall_ns(&mut self) -> Option<i64> {
        Some(1_700_000_000_000_000_000)
    }

    fn delay_ns(&mut self, ns: u32) {
        self.world.borrow_mut().delays.push(ns);
    }

    fn log(&mut self, workload: &str, level: LogLevel, line: &str) {
        assert_eq!(workload, "app-0");
        self.world.borrow_mut().logs.push((level, line.to_string()));
    }

    fn publish(&mut self, namespace: &str, topic: &str, payload: &[u8]) -> Result<(), Busy> {
        let mut w = self.world.borrow_mut();
        w.published
            .push((namespace.to_string(), topic.to_string(), payload.to_vec()));
        Ok(())
    }

    fn kv(&mut self) -> Option<&mut dyn KvStore> {
        self.kv.as_mut().map(|kv| kv as &mut dyn KvStore)
    }

    fn has_gpio(&mut self, pin: u32) -> bool {
        self.world.borrow().pins.contains_key(&pin)
    }

    fn gpio_read(&mut self, pin: u32) -> Result<bool, DeviceError> {
        self.world
            .borrow()
            .pins
            .get(&pin)
            .copied()
            .ok_or(DeviceError::NotFound)
    }

    fn gpio_write(&mut self, pin: u32, high: bool) -> Result<(), DeviceError> {
        self.world.borrow_mut().pins.insert(pin, high);
        Ok(())
    }

    fn gpio_watch(&mut self, pin: u32, edges: Edges) -> Result<(), DeviceError> {
        self.world.borrow_mut().watching.insert(pin, edges);
        Ok(())
    }

    fn gpio_unwatch(&mut self, pin: u32) {
        self.world.borrow_mut().watching.remove(&pin);
    }

    fn i2c(&mut self, name: &str) -> Option<&mut DynI2c> {
        (name == "i2c-1").then_some(&mut self.i2c as &mut DynI2c)
    }

    fn spi(&mut self, name: &str) -> Option<&mut DynSpi> {
        (name == "spidev0.0").then_some(&mut self.spi as &mut DynSpi)
    }
}

/// A KV store in the world's map.
pub struct MemKv(Shared);

impl KvStore for MemKv {
    fn get(&mut self, store: &str, key: &[u8], buf: &mut [u8]) -> Result<Option<usize>, KvError> {
        let w = self.0.borrow();
        Ok(w.kv.get(&(store.to_string(), key.to_vec())).map(|v| {
            let n = v.len().min(buf.len());
            buf[..n].copy_from_slice(&v[..n]);
            v.len()
        }))
    }

    fn set(&mut self, store: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let mut w = self.0.borrow_mut();
        w.kv_writes += 1;
        w.kv.insert((store.to_string(), key.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, store: &str, key: &[u8]) -> Result<bool, KvError> {
        let mut w = self.0.borrow_mut();
        Ok(w.kv.remove(&(store.to_string(), key.to_vec())).is_some())
    }

    fn used(&mut self, store: &str) -> Result<u64, KvError> {
        let w = self.0.borrow();
        Ok(w.kv
            .iter()
            .filter(|((s, _), _)| s == store)
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

/// A BME280-like sensor at 0x76 behind an `embedded_hal` I2C bus with its own error type:
/// register 0xD0 reads 0x60 (`` ` ``), 0xD1 reads `!`.
pub struct Sensor(Shared);

#[derive(Debug)]
pub struct SensorError(i2c::ErrorKind);

impl i2c::Error for SensorError {
    fn kind(&self) -> i2c::ErrorKind {
        self.0
    }
}

impl i2c::ErrorType for Sensor {
    type Error = SensorError;
}

impl i2c::I2c for Sensor {
    fn transaction(
        &mut self,
        address: u8,
        ops: &mut [i2c::Operation<'_>],
    ) -> Result<(), SensorError> {
        if address != 0x76 {
            return Err(SensorError(i2c::ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address,
            )));
        }
        let mut reg = 0u8;
        let mut log = format!("{address:#x}");
        for op in ops {
            match op {
                i2c::Operation::Write(bytes) => {
                    reg = bytes[0];
                    log += &format!(" W{bytes:02x?}");
                }
                i2c::Operation::Read(buf) => {
                    for b in buf.iter_mut() {
                        *b = match reg {
                            0xd0 => 0x60,
                            0xd1 => b'!',
                            _ => 0,
                        };
                        reg = reg.wrapping_add(1);
                    }
                    log += &format!(" R{}", buf.len());
                }
            }
        }
        self.0.borrow_mut().bus_log.push(log);
        Ok(())
    }
}

/// An SPI device answering each byte written with its ASCII case toggled.
pub struct Loopback(Shared);

#[derive(Debug)]
pub struct LoopbackError;

impl spi::Error for LoopbackError {
    fn kind(&self) -> spi::ErrorKind {
        spi::ErrorKind::Other
    }
}

impl spi::ErrorType for Loopback {
    type Error = LoopbackError;
}

impl spi::SpiDevice for Loopback {
    fn transaction(&mut self, ops: &mut [spi::Operation<'_, u8>]) -> Result<(), LoopbackError> {
        let mut log = String::from("cs");
        for op in ops {
            match op {
                spi::Operation::Read(buf) => buf.fill(b'?'),
                spi::Operation::Write(bytes) => log += &format!(" W{}", bytes.len()),
                spi::Operation::Transfer(read, write) => {
                    for (r, w) in read.iter_mut().zip(write.iter()) {
                        *r = w ^ 0x20;
                    }
                }
                spi::Operation::TransferInPlace(buf) => buf.iter_mut().for_each(|b| *b ^= 0x20),
                spi::Operation::DelayNs(ns) => log += &format!(" D{ns}"),
            }
        }
        self.0.borrow_mut().bus_log.push(log);
        Ok(())
    }
}

/// A precompiled artifact of `wat` for the host's Pulley target, with the runtime's settings.
pub fn artifact(wat: &str) -> Vec<u8> {
    let engine = wasmtime::Engine::new(&config()).expect("engine with Cranelift");
    engine
        .precompile_module(wat.as_bytes())
        .unwrap_or_else(|e| panic!("{e:?}\n{wat}"))
}

pub fn digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// `wat` precompiled and loaded into `rt`.
pub fn module(rt: &Runtime, wat: &str) -> Module {
    let bytes = artifact(wat);
    load(rt, &bytes, &digest(&bytes)).unwrap()
}

/// Import declarations for `names`, from the ABI table: `(import … (func $name …))`.
pub fn imports(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            let f = FUNCTIONS.iter().find(|f| f.name == *name).unwrap();
            let ty = |v: &Val| match v {
                Val::I32 => " i32",
                Val::I64 => " i64",
            };
            let params: String = f.params.iter().map(ty).collect();
            let results: String = f.results.iter().map(ty).collect();
            format!(
                "(import \"{IMPORT_MODULE}\" \"{name}\" (func ${name} (param{params}) (result{results})))\n"
            )
        })
        .collect()
}

/// A module of `imports` and `body`, with one page of memory and `$expect`: a check that
/// ends the instance with `exit(code)` when `got != want` (so a test sees which one failed).
pub fn wat(names: &[&str], body: &str) -> String {
    let mut names = names.to_vec();
    if !names.contains(&"exit") {
        names.push("exit");
    }
    format!(
        r#"(module
{}
(memory (export "memory") 1)
(func $expect (param $got i32) (param $want i32) (param $code i32)
  (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $code)))))
{body})"#,
        imports(&names)
    )
}

/// The workload `app-0` of deployment `app` in namespace `default` on node `node-1`.
pub fn workload(capabilities: Capabilities) -> Workload {
    Workload {
        node: "node-1".into(),
        name: "app-0".into(),
        deployment: "app".into(),
        namespace: "default".into(),
        config: vec![ConfigEntry {
            key: "greeting".into(),
            value: "hello world".into(),
        }],
        capabilities,
        memory_bytes: 1 << 20,
        fuel: Fuel {
            per_call: 200_000,
            on_stop: 200_000,
        },
    }
}

/// A fresh world, a runtime, and an instance of `wat` with `capabilities`.
pub fn instance(wat: &str, capabilities: Capabilities) -> (Shared, Instance<Board>) {
    let world = Shared::default();
    let rt = Runtime::new().unwrap();
    let module = module(&rt, wat);
    let instance = Instance::new(&rt, &module, workload(capabilities), Board::new(&world))
        .unwrap_or_else(|e| panic!("{e}"));
    (world, instance)
}

/// The text of the log lines so far.
pub fn lines(world: &Shared) -> Vec<String> {
    world.borrow().logs.iter().map(|(_, l)| l.clone()).collect()
}
