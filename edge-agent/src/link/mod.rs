//! Links to the outside: the MQTT driver that connects the agent to the hub, and the gateway
//! that represents attached microcontrollers as nodes of their own.

pub mod mcu;
pub mod mqtt;
mod serial;

pub use mqtt::{LinkEvent, MqttLink};
