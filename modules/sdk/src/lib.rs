//! Guest SDK for Wasmfleet modules: safe Rust over the `wasmfleet_v1` host ABI
//! (`modules/ABI.md`), for `wasm32-unknown-unknown`, `no_std`, no allocator, no WASI: the same
//! `.wasm` runs on Linux agents and on microcontrollers.
//!
//! A module is an [`App`] plus [`app!`]:
//!
//! ```ignore
//! #![no_std]
//! use wasmfleet_sdk::{App, Timer, info};
//!
//! struct Ticker { n: u32 }
//!
//! impl App for Ticker {
//!     fn start() -> Self {
//!         Timer::every(1000).expect("timer");
//!         Ticker { n: 0 }
//!     }
//!     fn on_timer(&mut self, _: Timer) {
//!         self.n += 1;
//!         info!("tick {}", self.n);
//!     }
//! }
//!
//! wasmfleet_sdk::app!(Ticker);
//! ```
//!
//! Buses and pins implement the embedded-hal 1.0 traits ([`i2c::I2c`], [`spi::SpiDevice`],
//! [`gpio::Input`], [`gpio::Output`], [`Delay`]), so existing driver crates work unchanged.
//! Every fallible call returns [`Error`], the ABI's error code.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod app;
pub mod config;
mod delay;
pub mod error;
pub mod gpio;
pub mod i2c;
pub mod kv;
pub mod log;
pub mod mqtt;
pub mod num;
pub mod ops;
#[cfg(all(feature = "panic-handler", target_arch = "wasm32", not(test)))]
mod panic;
pub mod spi;
pub mod strbuf;
pub mod sys;
pub mod time;
mod timer;

pub use app::App;
pub use delay::Delay;
pub use embedded_hal;
pub use error::{Error, Result};
pub use mqtt::Message;
pub use num::Fixed;
pub use strbuf::StrBuf;
pub use timer::Timer;

/// Ends the instance now: 0 is success, anything else failure with that exit code.
pub fn exit(code: i32) -> ! {
    // SAFETY: plain integer.
    unsafe { sys::exit(code) };
    // The host does not return from `exit`; if one ever did, trap rather than run on.
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    unreachable!("the host returned from exit")
}
