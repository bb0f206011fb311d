//! The Wasmfleet hub: it stores what users declare, places workloads on nodes, publishes each
//! node's desired state over MQTT, ingests what nodes report, and serves the HTTP API that the
//! `wasmfleet` CLI speaks.
//!
//! Layers, from pure to I/O: [`model`] (types, validation), [`scheduler`] and [`reconcile`]
//! (pure decisions), [`controller`] (the single writer that applies them), [`store`]
//! (SQLite), [`mqtt`] (embedded broker and client), [`api`] (HTTP), [`cli`] (the client).

pub mod api;
pub mod artifacts;
pub mod blob_fanout;
pub mod cli;
pub mod clock;
pub mod controller;
pub mod ingest;
pub mod limits;
pub mod model;
pub mod mqtt;
pub mod process;
pub mod reconcile;
pub mod scheduler;
pub mod serve;
pub mod store;

#[cfg(test)]
mod sim;
