//! Everything MQTT on the hub side, behind one module: the embedded broker ([`broker`]), the
//! hub's own client connection ([`link`]), which works the same against the embedded broker
//! or an external one (mosquitto, EMQX), and the [`inbox`] where the link leaves what the
//! fleet sends.

pub mod broker;
pub mod inbox;
pub mod link;

pub use broker::EmbeddedBroker;
pub use inbox::{FleetMessage, Inbox};
pub use link::Link;
pub use wasmfleet_common::BrokerUrl;
