//! The embedded MQTT broker: rmqtt with its retainer plugin (RAM storage).
//!
//! rmqtt fanned out desired states to 10k nodes 35× faster than rumqttd in our measurements
//! (DESIGN.md §6). Without the retainer plugin retained messages are silently dropped, and
//! with it they still live in memory only: the hub republishes every desired state from its
//! store after a restart.

use std::net::SocketAddr;

use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::task::JoinHandle;

/// Largest MQTT packet the broker accepts: a full frame plus headers.
const MAX_PACKET: u32 = (wasmfleet_proto::MAX_FRAME_LEN + 4096) as u32;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Could not listen (address in use, no permission…).
    #[error("embedded MQTT broker cannot listen on {addr}: {reason}")]
    Listen {
        /// Requested address.
        addr: SocketAddr,
        /// The system's reason.
        reason: String,
    },
    /// The retainer plugin failed to register.
    #[error("embedded MQTT broker: retainer plugin failed: {0}")]
    Plugin(String),
}

/// A running embedded broker; dropping it stops accepting connections.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker listening on `addr`.
    pub async fn start(addr: SocketAddr) -> Result<Self, BrokerError> {
        let scx = ServerContext::new()
            .plugins_config_map_add(
                "rmqtt-retainer",
                "storage.type = \"ram\"\nmax_retained_messages = 0\n",
            )
            .busy_handshaking_limit(20_000)
            .mqtt_max_sessions(0)
            .build()
            .await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Plugin(e.to_string()))?;
        let listen = |reason: String| BrokerError::Listen { addr, reason };
        let listener = Builder::new()
            .name("wasmfleet-tcp")
            .laddr(addr)
            // A hub restarted right after a crash must get its port back despite TIME_WAIT.
            .reuseaddr(Some(true))
            .backlog(4096)
            .max_connections(100_000)
            .max_handshaking_limit(20_000)
            .max_packet_size(MAX_PACKET)
            .allow_anonymous(true)
            .bind()
            .map_err(|e| listen(e.to_string()))?
            .tcp()
            .map_err(|e| listen(e.to_string()))?;
        let server = MqttServer::new(scx).listener(listener).build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        });
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
