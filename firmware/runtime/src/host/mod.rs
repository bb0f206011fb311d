//! The host API (`modules/ABI.md`): the `wasmfleet_v1` functions modules import, over the
//! board's [`Platform`]. Mirrors the Linux agent's `runtime/host`: the same range checks,
//! permission checks, limits and error codes, in the same order.
//!
//! Every function of the ABI table is implemented. Only the functions a module imports are
//! created (one `Func` each, in its store): no linker, so no name maps in RAM.

mod base;
mod bus;
mod gpio;
mod kv;
mod messages;

use alloc::string::String;
use alloc::vec::Vec;

use wasmtime::{Caller, Func, Memory, Store};

use crate::abi::{self, Capability, errno};
use crate::guest::{CallResult, ret};
use crate::limiter::MemoryBudget;
use crate::platform::{Edges, Platform};
use crate::timers::Timers;
use crate::workload::Workload;
pub(crate) use messages::{Current, TokenBucket};

/// Store data of one instance: the board, the memory budget and the host API state.
pub(crate) struct Host<P> {
    pub platform: P,
    pub memory: MemoryBudget,
    pub api: Api,
}

/// Host API state of one instance.
pub(crate) struct Api {
    /// The module's exported `memory`, once instantiated (host calls from a start function
    /// see none and get `INVALID_ARGUMENT`, as on Linux).
    pub memory: Option<Memory>,
    pub workload: Workload,
    /// Platform milliseconds at `start`: the origin of `clock_monotonic_ns`.
    pub origin_ms: u64,
    pub timers: Timers,
    /// Subscription handles and their filters, in handle order.
    pub subscriptions: Vec<(i32, String)>,
    pub next_subscription: i32,
    /// Watched pins and their edges.
    pub watches: Vec<(u32, Edges)>,
    /// The message `on_message` is handling, for `message_topic`/`message_payload`.
    pub current: Option<Current>,
    /// Opened I2C buses and SPI devices by name; the handle is the index.
    pub i2c: Vec<String>,
    pub spi: Vec<String>,
    pub publish: TokenBucket,
}

impl Api {
    pub fn new(workload: Workload) -> Api {
        Api {
            memory: None,
            workload,
            origin_ms: 0,
            timers: Timers::default(),
            subscriptions: Vec::new(),
            next_subscription: 0,
            watches: Vec::new(),
            current: None,
            i2c: Vec::new(),
            spi: Vec::new(),
            publish: TokenBucket::default(),
        }
    }

    /// Whether the instance still waits for anything (a timer, a subscription, a watch).
    pub fn has_interest(&self) -> bool {
        !self.timers.is_empty() || !self.subscriptions.is_empty() || !self.watches.is_empty()
    }
}

/// Creates host function `name` in `store`, if the ABI has it.
pub(crate) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    match abi::function(name)?.capability {
        Capability::Base => base::func(store, name),
        Capability::Kv => kv::func(store, name),
        Capability::Publish | Capability::Subscribe => messages::func(store, name),
        Capability::Gpio => gpio::func(store, name),
        Capability::I2c | Capability::Spi => bus::func(store, name),
    }
}

/// Why this node cannot offer host function `name`'s capability, if it cannot.
pub(crate) fn not_offered<P: Platform>(
    platform: &mut P,
    capability: Capability,
) -> Option<&'static str> {
    match capability {
        Capability::Kv if platform.kv().is_none() => {
            Some("this node has no persistent key-value storage")
        }
        _ => None,
    }
}

/// The guest memory and the instance's store data of a host call.
fn split<'a, P: 'static>(
    caller: &'a mut Caller<'_, Host<P>>,
) -> Result<(&'a mut [u8], &'a mut Host<P>), i32> {
    let memory = caller.data().api.memory.ok_or(errno::INVALID_ARGUMENT)?;
    Ok(memory.data_and_store_mut(caller))
}

/// Runs `f` with the guest memory and store data, folding errors into the returned code.
fn with_guest<P: 'static>(
    caller: &mut Caller<'_, Host<P>>,
    f: impl FnOnce(&mut [u8], &mut Host<P>) -> CallResult,
) -> i32 {
    ret(split(caller).and_then(|(mem, host)| f(mem, host)))
}
