//! How an instance ends, and how a wasmtime error becomes that end: the Linux agent's
//! `map_error` (`runtime/instance.rs`), with fuel in place of epochs.

use alloc::format;
use alloc::string::{String, ToString};

use wasmtime::Trap;

use crate::limiter::MemoryExceeded;

/// The error `exit(code)` raises to unwind the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exit({0})")]
pub struct Exit(pub i32);

/// Why an instance is no longer running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    /// The module called `exit(code)`: 0 is success, anything else a failure.
    #[error("exited with code {0}")]
    Exited(i32),
    /// After a handler returned, the module held no timer, subscription or watch: success.
    #[error("finished: holds no timers, subscriptions or GPIO watches")]
    Finished,
    /// [`crate::Instance::stop`] ended it (after `on_stop`, if it ran and returned).
    #[error("stopped")]
    Stopped,
    /// A handler trapped, ran out of fuel, or went over the memory limit: a failure, with a
    /// message as the Linux agent words it (`wasm trap: …`, `OOMKilled: …`).
    #[error("{0}")]
    Trapped(String),
}

impl Ended {
    /// Whether this end counts as success (phase `Succeeded`).
    pub fn is_success(&self) -> bool {
        matches!(self, Ended::Exited(0) | Ended::Finished | Ended::Stopped)
    }

    /// The exit code, for `exit(code)` ends.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Ended::Exited(code) => Some(*code),
            _ => None,
        }
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Instantiated; `on_start` has not run yet.
    Ready,
    /// `on_start` returned and the module waits for events.
    Running,
    /// Over: see why.
    Ended(Ended),
}

/// The end an error of a call to export `export` means. `fuel` is the budget of that call,
/// for the message.
pub fn end_of(e: &wasmtime::Error, export: &str, fuel: u64) -> Ended {
    if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
        return Ended::Exited(*code);
    }
    if let Some(oom) = e.downcast_ref::<MemoryExceeded>() {
        return Ended::Trapped(format!("OOMKilled: {oom}"));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if matches!(trap, Trap::OutOfFuel) {
            return Ended::Trapped(format!(
                "wasm trap: the module exceeded its CPU budget: `{export}` used all {fuel} fuel \
                 units of one call (an endless loop?)"
            ));
        }
        let text = trap.to_string();
        return Ended::Trapped(match text.starts_with("wasm trap") {
            true => text,
            false => format!("wasm trap: {text}"),
        });
    }
    Ended::Trapped(format!("`{export}` failed: {e}"))
}
