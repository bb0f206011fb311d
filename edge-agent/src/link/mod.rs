//! Links to the outside: the MQTT driver that connects the agent to the hub.

pub mod mqtt;

pub use mqtt::{LinkEvent, MqttLink};
