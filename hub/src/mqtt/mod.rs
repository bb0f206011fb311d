//! Everything MQTT on the hub side, behind one module: the embedded broker ([`broker`]) or a
//! mosquitto the hub runs in its place ([`mosquitto`]), the hub's own client connection
//! ([`link`]), which works the same against either or an external broker (mosquitto, EMQX),
//! and the [`inbox`] where the link leaves what the fleet sends.

pub mod broker;
pub mod inbox;
pub mod link;
pub mod mosquitto;

pub use broker::EmbeddedBroker;
pub use inbox::{FleetMessage, Inbox};
pub use link::Link;
pub use mosquitto::{MosquittoOptions, SupervisedMosquitto};
pub use wasmfleet_common::BrokerUrl;
