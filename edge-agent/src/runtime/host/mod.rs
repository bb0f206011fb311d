//! The host API (`modules/ABI.md`): the `wasmfleet_v1` functions modules import, over the
//! node's devices ([`crate::devices`]), key-value stores ([`crate::kv`]) and application
//! messages ([`crate::apps`]).
//!
//! A linker holds only the functions of the capabilities a workload is granted ([`Grants`]):
//! a module importing anything else cannot be instantiated, and the agent says which manifest
//! field is missing before trying. Within a capability, every topic, bus and pin is checked
//! against the manifest's lists at each call. Host calls never block the agent: the slow ones
//! (KV writes, delays) are async.

mod guest;
mod hw;
mod io;
pub mod timers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use wasmfleet_common::abi::{Capability, IMPORT_MODULE, errno, limits};
use wasmfleet_proto::{Capabilities, WorkloadSpec};
use wasmtime::{Caller, Linker, Memory};
use wasmtime_wasi::I32Exit;

use super::instance::Host;
use super::output::LineSink;
use crate::apps::{AppBus, AppMessage};
use crate::devices::{Devices, Edge, I2cBus, Shared, SpiDev, WatchGuard};
use crate::kv::{Kv, KvStores};
use guest::{bytes, copy_out, ret, text};
pub use timers::Timers;

/// What the host API reaches on this node: shared by all instances.
#[derive(Debug, Clone)]
pub struct Services {
    /// The node's hardware.
    pub devices: Devices,
    /// Per-deployment key-value stores.
    pub kv: KvStores,
    /// Application messages.
    pub apps: AppBus,
}

/// The set of capabilities a linker links, as a bit set (one linker per distinct set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grants(u8);

const GRANTABLE: [Capability; 6] = [
    Capability::Kv,
    Capability::Publish,
    Capability::Subscribe,
    Capability::Gpio,
    Capability::I2c,
    Capability::Spi,
];

impl Grants {
    /// The capabilities `caps` grants.
    pub fn of(caps: &Capabilities) -> Grants {
        Grants(
            GRANTABLE
                .iter()
                .enumerate()
                .filter(|(_, c)| c.granted_by(caps))
                .fold(0, |m, (i, _)| m | 1 << i),
        )
    }

    fn has(self, c: Capability) -> bool {
        c == Capability::Base
            || GRANTABLE
                .iter()
                .position(|g| *g == c)
                .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// Host API state of one instance (part of its store data).
pub struct Api {
    pub(super) memory: Option<Memory>,
    node: String,
    workload: String,
    deployment: String,
    namespace: String,
    config: BTreeMap<String, String>,
    caps: Capabilities,
    origin: Instant,
    pub(super) timers: Timers,
    pub(super) subscriptions: BTreeMap<i32, String>,
    next_subscription: i32,
    pub(super) watches: BTreeMap<u32, WatchGuard>,
    /// The message `on_message` is handling, for `message_topic`/`message_payload`.
    pub(super) current: Option<AppMessage>,
    i2c: Vec<(String, Shared<Box<dyn I2cBus>>)>,
    spi: Vec<(String, Shared<Box<dyn SpiDev>>)>,
    kv: Option<Arc<Mutex<Kv>>>,
    services: Services,
    instance: u64,
    messages: mpsc::Sender<AppMessage>,
    edges: mpsc::Sender<Edge>,
    publish_tokens: f64,
    publish_refill: Instant,
    stdout: LineSink,
    stderr: LineSink,
}

/// The receiving ends of an instance's event queues.
#[derive(Debug)]
pub struct EventQueues {
    /// Application messages.
    pub messages: mpsc::Receiver<AppMessage>,
    /// GPIO edges.
    pub edges: mpsc::Receiver<Edge>,
}

impl Api {
    /// The host API state for an instance of `spec` on `node`; fails if its KV store cannot
    /// be opened.
    pub fn new(
        spec: &WorkloadSpec,
        node: &str,
        services: &Services,
        stdout: LineSink,
        stderr: LineSink,
    ) -> Result<(Api, EventQueues), String> {
        let kv = match spec.capabilities.kv_bytes {
            0 => None,
            _ => Some(
                services
                    .kv
                    .open(&spec.deployment)
                    .map_err(|e| e.to_string())?,
            ),
        };
        let (messages, messages_rx) = mpsc::channel(limits::EVENT_QUEUE);
        let (edges, edges_rx) = mpsc::channel(limits::EVENT_QUEUE);
        let api = Api {
            memory: None,
            node: node.to_string(),
            workload: spec.name.clone(),
            deployment: spec.deployment.clone(),
            namespace: spec.namespace.clone(),
            config: spec
                .config
                .iter()
                .map(|c| (c.key.clone(), c.value.clone()))
                .collect(),
            caps: spec.capabilities.clone(),
            origin: Instant::now(),
            timers: Timers::default(),
            subscriptions: BTreeMap::new(),
            next_subscription: 0,
            watches: BTreeMap::new(),
            current: None,
            i2c: Vec::new(),
            spi: Vec::new(),
            kv,
            instance: services.apps.instance_id(),
            services: services.clone(),
            messages,
            edges,
            publish_tokens: PUBLISH_BURST,
            publish_refill: Instant::now(),
            stdout,
            stderr,
        };
        let queues = EventQueues {
            messages: messages_rx,
            edges: edges_rx,
        };
        Ok((api, queues))
    }

    /// Time since the instance started, the origin of its timers.
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Converts an instance time to an `Instant`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.origin + at
    }

    /// Whether the instance still waits for anything (a timer, a subscription, a watch).
    pub fn has_interest(&self) -> bool {
        !self.timers.is_empty() || !self.subscriptions.is_empty() || !self.watches.is_empty()
    }

    fn config_value(&self, key: &str) -> Option<&str> {
        match key {
            "wasmfleet.node" => Some(&self.node),
            "wasmfleet.workload" => Some(&self.workload),
            "wasmfleet.deployment" => Some(&self.deployment),
            "wasmfleet.namespace" => Some(&self.namespace),
            _ => self.config.get(key).map(String::as_str),
        }
    }
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("workload", &self.workload)
            .finish_non_exhaustive()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.services.apps.remove_instance(self.instance);
    }
}

/// Sustained publishes per second, and the burst a quiet module may spend at once.
const PUBLISH_RATE: f64 = 100.0;
const PUBLISH_BURST: f64 = 200.0;

/// The guest memory and the instance's API state of a host call.
fn split<'a>(caller: &'a mut Caller<'_, Host>) -> Result<(&'a mut [u8], &'a mut Api), i32> {
    let memory = caller.data().api.memory.ok_or(errno::INVALID_ARGUMENT)?;
    let (mem, host) = memory.data_and_store_mut(caller);
    Ok((mem, &mut host.api))
}

/// Runs `f` with the guest memory and API state, folding errors into the returned code.
fn with_guest(
    caller: &mut Caller<'_, Host>,
    f: impl FnOnce(&mut [u8], &mut Api) -> guest::CallResult,
) -> i32 {
    ret(split(caller).and_then(|(mem, api)| f(mem, api)))
}

/// A linker with WASI preview 1 and the host API functions of `grants`.
pub fn linker(engine: &wasmtime::Engine, grants: Grants) -> Result<Linker<Host>, String> {
    let mut l = wasmfleet_common::engine::wasi_linker(engine, |h: &mut Host| &mut h.wasi)
        .map_err(|e| e.to_string())?;
    let err = |e: wasmtime::Error| format!("defining host API: {e:#}");
    add_base(&mut l).map_err(err)?;
    if grants.has(Capability::Kv) {
        io::add_kv(&mut l).map_err(err)?;
    }
    if grants.has(Capability::Publish) {
        io::add_publish(&mut l).map_err(err)?;
    }
    if grants.has(Capability::Subscribe) {
        io::add_subscribe(&mut l).map_err(err)?;
    }
    if grants.has(Capability::Gpio) {
        hw::add_gpio(&mut l).map_err(err)?;
    }
    if grants.has(Capability::I2c) {
        hw::add_i2c(&mut l).map_err(err)?;
    }
    if grants.has(Capability::Spi) {
        hw::add_spi(&mut l).map_err(err)?;
    }
    Ok(l)
}

const M: &str = IMPORT_MODULE;

fn add_base(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(
        M,
        "log",
        |mut c: Caller<'_, Host>, level: i32, ptr: i32, len: i32| {
            let Ok((mem, api)) = split(&mut c) else {
                return;
            };
            let Ok(msg) = bytes(mem, ptr, len) else {
                return;
            };
            let msg = String::from_utf8_lossy(msg);
            let (sink, prefix) = match level {
                i32::MIN..=0 => (&api.stderr, "error: "),
                1 => (&api.stderr, "warn: "),
                2 => (&api.stdout, ""),
                3 => (&api.stdout, "debug: "),
                _ => (&api.stdout, "trace: "),
            };
            sink.write_line(&format!("{prefix}{msg}"));
        },
    )?;
    l.func_wrap(M, "clock_monotonic_ns", |c: Caller<'_, Host>| {
        c.data().api.now().as_nanos() as i64
    })?;
    l.func_wrap(M, "clock_wall_ns", |_: Caller<'_, Host>| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    })?;
    l.func_wrap(
        M,
        "timer_start",
        |mut c: Caller<'_, Host>, after: i64, period: i64| {
            let api = &mut c.data_mut().api;
            let now = api.now();
            api.timers.start(now, after, period)
        },
    )?;
    l.func_wrap(M, "timer_cancel", |mut c: Caller<'_, Host>, h: i32| {
        c.data_mut().api.timers.cancel(h)
    })?;
    l.func_wrap(
        M,
        "config_get",
        |mut c: Caller<'_, Host>, kp: i32, kl: i32, bp: i32, bl: i32| {
            with_guest(&mut c, |mem, api| {
                let key = text(mem, kp, kl)?;
                let value = api.config_value(key).ok_or(errno::NOT_FOUND)?.to_string();
                copy_out(mem, bp, bl, value.as_bytes())
            })
        },
    )?;
    l.func_wrap_async(M, "delay_ns", |_: Caller<'_, Host>, (ns,): (i64,)| {
        let ns = (ns.max(0) as u64).min(limits::DELAY_NS);
        Box::new(async move { tokio::time::sleep(Duration::from_nanos(ns)).await })
    })?;
    l.func_wrap(
        M,
        "exit",
        |_: Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(I32Exit(code)))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_common::abi::{FUNCTIONS, Val};

    /// The linker of every capability defines exactly the ABI table's functions and types.
    #[test]
    fn linkers_match_the_abi_table() {
        let engine = wasmfleet_common::engine::engine().unwrap();
        let all = Capabilities {
            i2c: vec!["a".into()],
            spi: vec!["b".into()],
            gpio: vec![1],
            publish: vec!["t".into()],
            subscribe: vec!["t".into()],
            kv_bytes: 1,
        };
        let ty = |v: &Val| match v {
            Val::I32 => "i32",
            Val::I64 => "i64",
        };
        let imports: String = FUNCTIONS
            .iter()
            .map(|f| {
                let p: Vec<_> = f.params.iter().map(ty).collect();
                let r: Vec<_> = f.results.iter().map(ty).collect();
                format!(
                    r#"(import "{M}" "{}" (func (param {}) (result {})))"#,
                    f.name,
                    p.join(" "),
                    r.join(" ")
                )
            })
            .collect();
        let wasm = wat::parse_str(format!(
            r#"(module {imports} (memory (export "memory") 1) (func (export "on_start")))"#
        ))
        .unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap_or_else(|e| panic!("{e:#}"));
        let full = linker(&engine, Grants::of(&all)).unwrap();
        full.instantiate_pre(&module)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let base = linker(&engine, Grants::of(&Capabilities::default())).unwrap();
        let err = match base.instantiate_pre(&module) {
            Ok(_) => panic!("a linker without grants linked i2c_open"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(M), "{err}");
    }
}
