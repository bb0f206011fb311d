//! The embedded MQTT broker: rmqtt with its retainer plugin (RAM storage), with every limit
//! that bounds its memory set explicitly rather than left to defaults.
//!
//! rmqtt fanned out desired states to 10k nodes faster than the other embeddable brokers we
//! measured, but its defaults are not fit for an unattended edge hub:
//! - Retained messages expire with the listener's message expiry (300 s) unless the retainer
//!   says otherwise, so a node connecting 5 minutes after its last change would get no
//!   desired state: `retained_message_ttl = "0s"` keeps them.
//! - Messages for a slow subscriber queue per session (`max_mqueue_len`, then dropped: QoS 0
//!   newest, QoS 1 oldest). Nodes get a short queue; the hub's own client, which receives every
//!   node's traffic, connects to a second, loopback-only listener with a long one.
//! - Nagle's algorithm is off (`nodelay`): desired state, status and chunk requests are small
//!   request/response exchanges that it delayed by tens of milliseconds.
//!
//! Without the retainer plugin retained messages are silently dropped, and with it they still
//! live in memory only: the hub republishes every desired state from its store after a
//! restart.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::task::JoinHandle;

/// Largest MQTT packet the broker accepts: a full frame plus headers.
const MAX_PACKET: u32 = (wasmfleet_proto::MAX_FRAME_LEN + 4096) as u32;

/// Most client sessions at once (each node is one; the process's file descriptors bound it
/// lower in practice).
pub const MAX_SESSIONS: isize = 100_000;

/// Messages queued for one node while its socket is slow. A node receives its desired state
/// and a window of blob chunks: a short queue is plenty.
const NODE_QUEUE: usize = 64;

/// Messages queued for the hub's own client, which subscribes to every node's presence,
/// status, heartbeats, logs and chunk requests. A connect storm sends three messages per node
/// within seconds (presence, heartbeat, status), and an overflow drops the oldest QoS 1
/// messages, which are the presences: with 20,000 here, 850 of 9,800 simulated nodes were
/// never seen. Sized for every session's storm; it only fills while the hub falls behind.
const HUB_QUEUE: usize = 4 * MAX_SESSIONS as usize;

/// The retainer: RAM storage; up to three retained topics per node (desired, status, online);
/// payloads up to a full frame; no expiry.
fn retainer_config() -> String {
    format!(
        "storage.type = \"ram\"\nmax_retained_messages = {}\nmax_payload_size = \"{}B\"\nretained_message_ttl = \"0s\"\n",
        3 * MAX_SESSIONS,
        MAX_PACKET
    )
}

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
    internal: SocketAddr,
    task: JoinHandle<()>,
}

/// A listener with the limits every session of it gets.
fn listener(
    name: &str,
    addr: SocketAddr,
    queue: usize,
    inflight: u16,
) -> Result<rmqtt::net::Listener, BrokerError> {
    let listen = |reason: String| BrokerError::Listen { addr, reason };
    Builder::new()
        .name(name)
        .laddr(addr)
        // A hub restarted right after a crash must get its port back despite TIME_WAIT.
        .reuseaddr(Some(true))
        .backlog(4096)
        .max_connections(100_000)
        .max_handshaking_limit(20_000)
        .max_packet_size(MAX_PACKET)
        .nodelay(true)
        .max_mqueue_len(queue)
        .max_inflight(NonZeroU16::new(inflight).unwrap_or(NonZeroU16::MIN))
        // A socket that cannot take one packet in this time is dropped, freeing its queue.
        .send_timeout(Duration::from_secs(5))
        // Queued (not retained) messages older than this are not delivered any more.
        .message_expiry_interval(Duration::from_secs(60))
        .max_session_expiry_interval(Duration::from_secs(300))
        .max_subscriptions(16)
        .max_topic_levels(8)
        .allow_anonymous(true)
        .bind()
        .map_err(|e| listen(e.to_string()))?
        .tcp()
        .map_err(|e| listen(e.to_string()))
}

impl EmbeddedBroker {
    /// Starts a broker for nodes on `addr`, and a loopback listener for the hub's own client.
    pub async fn start(addr: SocketAddr) -> Result<Self, BrokerError> {
        let scx = ServerContext::new()
            .plugins_config_map_add("rmqtt-retainer", retainer_config())
            .busy_handshaking_limit(20_000)
            .mqtt_max_sessions(MAX_SESSIONS)
            // Refusing CONNECTs while the CPU is busy would turn a reconnect storm on a small
            // hub into a longer one; agents back off on their own.
            .busy_check_enable(false)
            .build()
            .await;
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|e| BrokerError::Plugin(e.to_string()))?;
        let nodes = listener("wasmfleet-nodes", addr, NODE_QUEUE, 16)?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let hub = listener("wasmfleet-hub", loopback, HUB_QUEUE, 256)?;
        let internal = hub.local_addr().map_err(|e| BrokerError::Listen {
            addr: loopback,
            reason: e.to_string(),
        })?;
        let server = MqttServer::new(scx)
            .listener_by_id(nodes, addr.port())
            .listener_by_id(hub, internal.port())
            .build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        });
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            addr,
            internal,
            task,
        })
    }

    /// The address nodes connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The loopback address the hub's own client connects to.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_state_never_expires_and_fits_a_full_frame() {
        let c = retainer_config();
        assert!(c.contains("retained_message_ttl = \"0s\""), "{c}");
        assert!(
            c.contains(&format!("max_payload_size = \"{MAX_PACKET}B\"")),
            "{c}"
        );
        assert!(MAX_PACKET as usize > wasmfleet_proto::MAX_FRAME_LEN);
    }
}
