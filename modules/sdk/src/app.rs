//! The module's entry points. The host calls exports (`on_start`, `on_timer`, ...); the
//! [`app!`](crate::app!) macro generates them and forwards each to a method of one value of
//! your [`App`] type, kept in a static [`AppCell`].

use crate::mqtt::Message;
use crate::timer::Timer;
use core::cell::RefCell;

/// A Wasmfleet module: built by [`start`](App::start) in `on_start`, then called for each
/// event. Every handler defaults to doing nothing.
///
/// The instance lives while it holds a timer, subscription or GPIO watch; when it holds none
/// after a handler returns, it ends with success.
pub trait App: Sized + 'static {
    /// Called once, in `on_start`: open devices, start timers, subscribe.
    fn start() -> Self;

    /// A timer started with [`Timer::every`]/[`Timer::once`] fired.
    fn on_timer(&mut self, _timer: Timer) {}

    /// A message arrived on a subscription.
    fn on_message(&mut self, _msg: Message<'_>) {}

    /// A watched pin changed; `high` is its new level.
    fn on_gpio(&mut self, _pin: u32, _high: bool) {}

    /// The instance is being stopped (deleted, updated, agent shutdown); it has 1 s.
    fn on_stop(&mut self) {}
}

// A wasm module built with the `atomics` feature may run on several threads; the cell's
// `Sync` promise below holds only without it.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
compile_error!("wasmfleet-sdk's AppCell assumes single-threaded wasm (no `atomics` feature)");

/// Holds the app between host calls. Used by [`app!`](crate::app!); not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct AppCell<A>(RefCell<Option<A>>);

// SAFETY: only sound because a wasm32 guest without the `atomics` target feature (refused
// above) has exactly one thread: the cell is never touched from two threads. The host calls
// one export at a time and never from inside a host call; should guest code re-enter an
// export itself, the `RefCell` panics instead of handing out a second `&mut`.
unsafe impl<A> Sync for AppCell<A> {}

impl<A: App> AppCell<A> {
    /// An empty cell, for a `static`.
    pub const fn new() -> Self {
        AppCell(RefCell::new(None))
    }

    /// `on_start`: builds the app.
    pub fn start(&self) {
        let app = A::start();
        *self.0.borrow_mut() = Some(app);
    }

    /// Runs `f` on the app; does nothing if it was never started (no event comes before
    /// `on_start` returns, but a trap in `start` must not turn into a second one here).
    pub fn with(&self, f: impl FnOnce(&mut A)) {
        if let Some(app) = self.0.borrow_mut().as_mut() {
            f(app)
        }
    }

    /// `on_timer(timer)`.
    pub fn on_timer(&self, timer: i32) {
        self.with(|app| app.on_timer(Timer::from_id(timer)))
    }

    /// `on_message(subscription, topic_len, payload_len)`.
    pub fn on_message(&self, subscription: i32, topic_len: i32, payload_len: i32) {
        self.with(|app| app.on_message(Message::new(subscription, topic_len, payload_len)))
    }

    /// `on_gpio(pin, level)`.
    pub fn on_gpio(&self, pin: i32, level: i32) {
        self.with(|app| app.on_gpio(pin as u32, level != 0))
    }

    /// `on_stop()`.
    pub fn on_stop(&self) {
        self.with(|app| app.on_stop())
    }
}

impl<A: App> Default for AppCell<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// Generates the module's exports for an [`App`] type: `wasmfleet_sdk::app!(MyApp);`
///
/// Exports `on_start`, `on_timer`, `on_message`, `on_gpio` and `on_stop` (all of them: the
/// defaults of [`App`] make unused ones no-ops).
#[macro_export]
macro_rules! app {
    ($app:ty) => {
        const _: () = {
            static APP: $crate::app::AppCell<$app> = $crate::app::AppCell::new();

            #[unsafe(no_mangle)]
            pub extern "C" fn on_start() {
                APP.start()
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn on_timer(timer: i32) {
                APP.on_timer(timer)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn on_message(subscription: i32, topic_len: i32, payload_len: i32) {
                APP.on_message(subscription, topic_len, payload_len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn on_gpio(pin: i32, level: i32) {
                APP.on_gpio(pin, level)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn on_stop() {
                APP.on_stop()
            }
        };
    };
}
