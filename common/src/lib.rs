//! What the Wasmfleet hub and `edge-agent` both need and that is not the wire contract
//! (`wasmfleet-proto` stays the wire contract only).
//!
//! - [`abi`]: the host API's functions, capabilities and error codes, as data.
//! - [`quantity`]: Kubernetes-style byte quantities (`16Mi`, `1G`), one grammar everywhere.
//! - [`broker_url`]: `mqtt://host:port` parsing.
//! - [`digest`]: SHA-256 content addresses of bytes and files.
//! - [`fsutil`]: crash-safe file replacement (unique temporary file, fsync, rename, directory
//!   fsync).
//! - [`backoff`]: jittered exponential reconnect delays.
//! - [`subscribe`]: a sans-IO tracker that gets MQTT subscriptions granted (SUBACK checked,
//!   retried, downgraded to QoS 0 where a broker refuses QoS 1).
//! - `mqtt` (feature `mqtt`): the MQTT session driver under both links: reconnects with
//!   backoff, keeps subscriptions granted, never lets a slow consumer stall the socket.
//! - `engine` (feature `engine`): the wasmtime configuration and the admission check for
//!   modules, so the hub accepts exactly the modules agents can run.

pub use wasmfleet_node::abi;
pub mod backoff;
pub mod broker_url;
pub mod digest;
#[cfg(feature = "engine")]
pub mod engine;
pub mod fsutil;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod quantity;
pub mod subscribe;

pub use broker_url::BrokerUrl;
