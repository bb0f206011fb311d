//! One workload running in its own store: instantiation (imports checked, memory limited),
//! and the event dispatch of `modules/ABI.md` driven by the board's main loop, one handler
//! call at a time, each with a fuel budget.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use wasmfleet_proto::topic::filter_matches;
use wasmtime::{ExternType, Module, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::limits;
use crate::engine::Runtime;
use crate::host::{Api, Current, Host};
use crate::imports::{self, ImportError};
use crate::limiter::MemoryBudget;
use crate::outcome::{Ended, State, end_of};
use crate::platform::{Edges, Platform};
use crate::workload::{Fuel, Workload};

/// Why an instance could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// An import is not offered, not granted or of the wrong type.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A required export is missing, or an export has the wrong type.
    #[error("{0}")]
    Export(String),
    /// Instantiation failed: its memories do not fit the limit (`OOMKilled: …`), or its
    /// start function trapped or ran out of fuel.
    #[error("cannot instantiate module: {0}")]
    Instantiate(String),
}

/// The handlers a module exports (all but `on_start` optional).
struct Handlers {
    on_start: TypedFunc<(), ()>,
    on_timer: Option<TypedFunc<i32, ()>>,
    on_message: Option<TypedFunc<(i32, i32, i32), ()>>,
    on_gpio: Option<TypedFunc<(i32, i32), ()>>,
    on_stop: Option<TypedFunc<(), ()>>,
}

/// A running event module.
pub struct Instance<P: Platform + 'static> {
    store: Store<Host<P>>,
    handlers: Handlers,
    state: State,
}

impl<P: Platform + 'static> fmt::Debug for Instance<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("workload", &self.workload().name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<P: Platform + 'static> Instance<P> {
    /// Instantiates `module` for `workload` over `platform`: checks its imports against the
    /// grants and what this node offers, its exports (`memory`, `on_start`, and the types of
    /// the other handlers), and runs its start function, if any, within the memory limit and
    /// one call's fuel. `on_start` runs at [`Instance::start`]. Only the host functions the
    /// module imports are created.
    pub fn new(
        rt: &Runtime,
        module: &Module,
        workload: Workload,
        platform: P,
    ) -> Result<Instance<P>, InstanceError> {
        let fuel = workload.fuel.per_call;
        let host = Host {
            platform,
            memory: MemoryBudget::new(workload.memory_bytes),
            api: Api::new(workload),
        };
        let mut store = Store::new(rt.engine(), host);
        store.limiter(|h| &mut h.memory);
        // Imports first, as the hub at `apply` and the Linux agent judge them.
        let imports = imports::resolve(&mut store, module)?;
        check_exports(module)?;
        store
            .set_fuel(fuel)
            .map_err(|e| InstanceError::Instantiate(e.to_string()))?;
        let instance = wasmtime::Instance::new(&mut store, module, &imports)
            .map_err(|e| InstanceError::Instantiate(end_of(&e, "start", fuel).to_string()))?;
        let memory = instance.get_memory(&mut store, "memory").ok_or_else(|| {
            InstanceError::Export("module exports no memory named `memory`".into())
        })?;
        store.data_mut().api.memory = Some(memory);
        let on_start = instance
            .get_typed_func(&mut store, "on_start")
            .map_err(|e| bad_export("on_start", &e))?;
        let handlers = Handlers {
            on_start,
            on_timer: handler(&mut store, &instance, "on_timer")?,
            on_message: handler(&mut store, &instance, "on_message")?,
            on_gpio: handler(&mut store, &instance, "on_gpio")?,
            on_stop: handler(&mut store, &instance, "on_stop")?,
        };
        Ok(Instance {
            store,
            handlers,
            state: State::Ready,
        })
    }

    /// Calls `on_start`; `now` (platform milliseconds) becomes the origin of the module's
    /// `clock_monotonic_ns`. `Err` when the instance has ended: it trapped or exited, or it
    /// holds nothing to wait for (finished, a success). A running instance ignores it.
    pub fn start(&mut self, now: u64) -> Result<(), Ended> {
        match &self.state {
            State::Ready => {}
            State::Running => return Ok(()),
            State::Ended(e) => return Err(e.clone()),
        }
        self.store.data_mut().api.origin_ms = now;
        let f = self.handlers.on_start.clone();
        self.call("on_start", self.fuel().per_call, |s| f.call(s, ()))?;
        self.state = State::Running;
        self.after_handler()
    }

    /// When the next timer is due, in platform milliseconds; `None` without timers (or once
    /// ended). The board sleeps until then, or until an event arrives.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            State::Running => self.store.data().api.timers.next_due(),
            _ => None,
        }
    }

    /// Calls `on_timer` for each timer due at `now`, earliest first, for at most
    /// [`limits::TIMERS`] calls (a module restarting a 0 ms timer from its handler cannot
    /// starve the board's loop: call again while [`Instance::next_deadline`] is not later
    /// than now). A periodic timer that fell behind fires once. Returns the number of calls.
    pub fn fire_due_timers(&mut self, now: u64) -> Result<usize, Ended> {
        if !self.running()? {
            return Ok(0);
        }
        let mut fired = 0;
        while fired < limits::TIMERS {
            let Some(handle) = self.store.data_mut().api.timers.pop_due(now) else {
                break;
            };
            fired += 1;
            if let Some(f) = self.handlers.on_timer.clone() {
                self.call("on_timer", self.fuel().per_call, |s| f.call(s, handle))?;
            }
            self.after_handler()?;
        }
        Ok(fired)
    }

    /// Hands a message on `topic` (relative to the instance's namespace) to `on_message`,
    /// once for each subscription whose filter matches it, in subscription order. The module
    /// reads topic and payload with `message_topic`/`message_payload` during the call; they
    /// are borrowed, not copied. Returns the number of calls.
    pub fn deliver_message(&mut self, topic: &str, payload: &[u8]) -> Result<usize, Ended> {
        if !self.running()? {
            return Ok(0);
        }
        let matching: heapless::Vec<i32, { limits::SUBSCRIPTIONS }> = self
            .store
            .data()
            .api
            .subscriptions
            .iter()
            .filter(|(_, filter)| filter_matches(filter, topic))
            .map(|(h, _)| *h)
            .collect();
        let args = |h| (h, topic.len() as i32, payload.len() as i32);
        let mut calls = 0;
        for handle in matching {
            // Unsubscribed by an earlier call for this message: not for the module any more.
            let subs = &self.store.data().api.subscriptions;
            if !subs.iter().any(|(h, _)| *h == handle) {
                continue;
            }
            calls += 1;
            if let Some(f) = self.handlers.on_message.clone() {
                // SAFETY: `topic` and `payload` are borrowed for this whole function, and the
                // message is cleared right after the call, before anything else can run.
                let current = unsafe { Current::new(topic.as_bytes(), payload) };
                self.store.data_mut().api.current = Some(current);
                let r = self.call("on_message", self.fuel().per_call, |s| {
                    f.call(s, args(handle))
                });
                self.store.data_mut().api.current = None;
                r?;
            }
            self.after_handler()?;
        }
        Ok(calls)
    }

    /// Hands an edge of `pin` (now at `level`) to `on_gpio`, if the module watches that edge
    /// of that pin; other edges are ignored. Returns whether `on_gpio` was called.
    pub fn deliver_gpio(&mut self, pin: u32, level: bool) -> Result<bool, Ended> {
        if !self.running()? {
            return Ok(false);
        }
        let watches = &self.store.data().api.watches;
        let Some((_, edges)) = watches.iter().find(|(p, _)| *p == pin) else {
            return Ok(false);
        };
        if !edges.includes(level) {
            return Ok(false);
        }
        if let Some(f) = self.handlers.on_gpio.clone() {
            let args = (pin as i32, i32::from(level));
            self.call("on_gpio", self.fuel().per_call, |s| f.call(s, args))?;
        }
        self.after_handler()?;
        Ok(true)
    }

    /// Ends the instance: calls `on_stop` (if exported, and if `on_start` has run) with
    /// [`Fuel::on_stop`], then releases its timers, subscriptions and watches. Returns how
    /// it ended: [`Ended::Stopped`], or what `on_stop` did (a trap, an `exit`). An instance
    /// already ended stays as it was.
    pub fn stop(&mut self) -> Ended {
        match &self.state {
            State::Ended(e) => return e.clone(),
            State::Ready => return self.end(Ended::Stopped),
            State::Running => {}
        }
        if let Some(f) = self.handlers.on_stop.clone()
            && let Err(ended) = self.call("on_stop", self.fuel().on_stop, |s| f.call(s, ()))
        {
            return ended;
        }
        self.end(Ended::Stopped)
    }

    /// Where the instance is in its life.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The filters (relative to the namespace) of the instance's subscriptions: the board
    /// forwards their union upstream (see [`crate::union_filters`]).
    pub fn subscriptions(&self) -> impl Iterator<Item = &str> {
        self.store
            .data()
            .api
            .subscriptions
            .iter()
            .map(|(_, f)| f.as_str())
    }

    /// The pins the instance watches, and which edges.
    pub fn watches(&self) -> impl Iterator<Item = (u32, Edges)> + '_ {
        self.store.data().api.watches.iter().copied()
    }

    /// What the instance runs as.
    pub fn workload(&self) -> &Workload {
        &self.store.data().api.workload
    }

    /// The highest total of its memories and tables so far, bytes.
    pub fn memory_peak(&self) -> u64 {
        self.store.data().memory.peak
    }

    /// The board under the instance.
    pub fn platform(&self) -> &P {
        &self.store.data().platform
    }

    /// The board under the instance, mutably.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.store.data_mut().platform
    }

    fn fuel(&self) -> Fuel {
        self.store.data().api.workload.fuel
    }

    /// Whether events go to handlers: `Ok(false)` before `on_start`, `Err` once ended.
    fn running(&self) -> Result<bool, Ended> {
        match &self.state {
            State::Ready => Ok(false),
            State::Running => Ok(true),
            State::Ended(e) => Err(e.clone()),
        }
    }

    /// Calls an export with `fuel`; an error ends the instance.
    fn call(
        &mut self,
        export: &str,
        fuel: u64,
        f: impl FnOnce(&mut Store<Host<P>>) -> wasmtime::Result<()>,
    ) -> Result<(), Ended> {
        if let Err(e) = self.store.set_fuel(fuel) {
            return Err(self.end(Ended::Trapped(format!("cannot set fuel: {e}"))));
        }
        match f(&mut self.store) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.end(end_of(&e, export, fuel))),
        }
    }

    /// After a handler: an instance holding nothing to wait for has finished.
    fn after_handler(&mut self) -> Result<(), Ended> {
        match self.store.data().api.has_interest() {
            true => Ok(()),
            false => Err(self.end(Ended::Finished)),
        }
    }

    /// Ends the instance with `ended`, releasing what the board holds for it.
    fn end(&mut self, ended: Ended) -> Ended {
        self.release();
        self.state = State::Ended(ended.clone());
        ended
    }

    /// Drops timers and subscriptions and stops the board's watches.
    fn release(&mut self) {
        let host = self.store.data_mut();
        host.api.timers.clear();
        host.api.subscriptions = Vec::new();
        for (pin, _) in core::mem::take(&mut host.api.watches) {
            host.platform.gpio_unwatch(pin);
        }
    }
}

impl<P: Platform + 'static> Drop for Instance<P> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Refuses a module without `memory` or `on_start` before its memories are allocated.
fn check_exports(module: &Module) -> Result<(), InstanceError> {
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(InstanceError::Export(
            "module exports no memory named `memory`".into(),
        ));
    }
    if !matches!(module.get_export("on_start"), Some(ExternType::Func(_))) {
        return Err(InstanceError::Export(
            "module exports no function `on_start`: not a Wasmfleet event module".into(),
        ));
    }
    Ok(())
}

fn bad_export(name: &str, e: &wasmtime::Error) -> InstanceError {
    InstanceError::Export(format!("bad `{name}` export: {e}"))
}

/// An optional handler: a missing export means the module does not want those events; one
/// of the wrong type is a mistake worth refusing.
fn handler<P: 'static, A: WasmParams, R: WasmResults>(
    store: &mut Store<Host<P>>,
    instance: &wasmtime::Instance,
    name: &str,
) -> Result<Option<TypedFunc<A, R>>, InstanceError> {
    if instance.get_export(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func(&mut *store, name)
        .map(Some)
        .map_err(|e| bad_export(name, &e))
}
