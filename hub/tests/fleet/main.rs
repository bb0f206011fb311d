//! End to end with real processes: `wasmfleet serve` (embedded rmqtt broker or mosquitto +
//! SQLite), `edge-agent`s and the CLI on 127.0.0.1 with free ports.
//!
//! One test binary with a module per theme: each integration-test binary links the whole hub
//! (wasmtime included), so one binary instead of one per file saves minutes of linking in CI.

mod allocator;
mod artifacts;
mod common;
mod demo;
mod e2e;
mod fanout;
mod firmware;
mod health;
mod host_api;
mod hostile;
mod mosquitto;
mod restart;
mod rollout;
