//! The Wasmfleet wire contract.
//!
//! Every byte that crosses MQTT between the hub, `edge-agent` and firmware is defined here:
//! topic names ([`topic`]), message types ([`msg`]) and the versioned frame that carries them
//! ([`frame`]). The crate is `no_std` (it needs only `alloc`) and sans-IO: it never touches a
//! socket, a clock or a file, so the same code runs on a gateway and on a microcontroller.
//!
//! Wire format: one version byte ([`frame::WIRE_VERSION`]) followed by the message in
//! [postcard](https://docs.rs/postcard). Golden-byte tests in `tests/golden.rs` pin it; a change
//! that breaks them is a wire-format change and needs a new version byte.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod digest;
pub mod engine;
pub mod error;
pub mod frame;
pub mod link;
pub mod msg;
pub mod name;
pub mod topic;

pub use digest::Digest;
pub use error::{DecodeError, NameError};
pub use frame::{MAX_FRAME_LEN, WIRE_VERSION, decode, encode};
pub use msg::*;
