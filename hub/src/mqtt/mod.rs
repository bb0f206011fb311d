//! Everything MQTT on the hub side, behind one module: the embedded broker ([`broker`]) and the
//! hub's own client connection ([`link`]), which works the same against the embedded broker
//! or an external one (mosquitto, EMQX).

pub mod broker;
pub mod link;

pub use broker::EmbeddedBroker;
pub use link::{BrokerUrl, Inbound, Link};
