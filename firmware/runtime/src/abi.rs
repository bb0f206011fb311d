//! The host ABI (`modules/ABI.md`) as data: the one table the hub, the Linux agent and the
//! firmware all judge imports with (`wasmfleet_node::abi`). `tests/abi_contract.rs` checks it
//! against `modules/ABI.md`.

pub use wasmfleet_node::abi::*;
