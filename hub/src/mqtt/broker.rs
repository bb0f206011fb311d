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
pub(crate) const MAX_PACKET: u32 = (wasmfleet_proto::MAX_FRAME_LEN + 4096) as u32;

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
pub(crate) const HUB_QUEUE: usize = 4 * MAX_SESSIONS as usize;

/// Subscriptions a node may hold: its desired state, blob chunks and a few fetches at once.
const NODE_SUBSCRIPTIONS: usize = 16;

/// Subscriptions of the hub's own client: its wildcards, and the `online` topics of a batch of
/// nodes whose announcements it reads again ([`crate::mqtt::link::REREAD_BATCH`]; two
/// batches overlap for a moment).
const HUB_SUBSCRIPTIONS: usize = 2 * crate::mqtt::link::REREAD_BATCH + 64;

/// How long a socket may take to accept one packet before the broker drops it (and frees its
/// queue). The hub's own client gets longer: dropping it loses every message queued for it.
const NODE_SEND_TIMEOUT: Duration = Duration::from_secs(5);
const HUB_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Retained messages the broker keeps: three per node (desired, status, online) for the most
/// sessions, and as many again for what modules retain on application topics. At exactly
/// three per node a full fleet filled the store, and the desired states of the last nodes to
/// get one were not retained (the broker warns and drops them).
const MAX_RETAINED: usize = 6 * MAX_SESSIONS as usize;

/// The retainer: RAM storage; [`MAX_RETAINED`] messages; payloads up to a full frame; no
/// expiry.
fn retainer_config() -> String {
    format!(
        "storage.type = \"ram\"\nmax_retained_messages = {MAX_RETAINED}\nmax_payload_size = \"{MAX_PACKET}B\"\nretained_message_ttl = \"0s\"\n",
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

/// Limits every session of a listener gets.
struct SessionLimits {
    queue: usize,
    inflight: u16,
    subscriptions: usize,
    send_timeout: Duration,
    /// Connections in their handshake at once; more wait their turn. rmqtt starts a worker
    /// (624 B) per slot when the listener takes its first connection: 20,000 slots on each of
    /// the two listeners were 25 MB before any node connected.
    handshakes: usize,
}

/// Handshakes at once on the nodes' listener (rmqtt's default). Two cores complete far fewer
/// at a time; a connect storm queues the rest, as the listen backlog would.
const NODE_HANDSHAKES: usize = 1_000;

/// A listener with the limits every session of it gets.
fn listener(
    name: &str,
    addr: SocketAddr,
    limits: SessionLimits,
) -> Result<rmqtt::net::Listener, BrokerError> {
    let listen = |reason: String| BrokerError::Listen { addr, reason };
    Builder::new()
        .name(name)
        .laddr(addr)
        // A hub restarted right after a crash must get its port back despite TIME_WAIT.
        .reuseaddr(Some(true))
        .backlog(4096)
        .max_connections(100_000)
        .max_handshaking_limit(limits.handshakes)
        .max_packet_size(MAX_PACKET)
        .nodelay(true)
        .max_mqueue_len(limits.queue)
        .max_inflight(NonZeroU16::new(limits.inflight).unwrap_or(NonZeroU16::MIN))
        .send_timeout(limits.send_timeout)
        // Queued (not retained) messages older than this are not delivered any more.
        .message_expiry_interval(Duration::from_secs(60))
        .max_session_expiry_interval(Duration::from_secs(300))
        .max_subscriptions(limits.subscriptions)
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
        let nodes = SessionLimits {
            queue: NODE_QUEUE,
            inflight: 16,
            subscriptions: NODE_SUBSCRIPTIONS,
            send_timeout: NODE_SEND_TIMEOUT,
            handshakes: NODE_HANDSHAKES,
        };
        let nodes = listener("wasmfleet-nodes", addr, nodes)?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let hub = SessionLimits {
            queue: HUB_QUEUE,
            inflight: 256,
            subscriptions: HUB_SUBSCRIPTIONS,
            send_timeout: HUB_SEND_TIMEOUT,
            // The hub's own link, and a reconnect of it now and then.
            handshakes: 4,
        };
        let hub = listener("wasmfleet-hub", loopback, hub)?;
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
    use wasmfleet_proto::topic::NodeTopic;

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
        assert!(
            c.contains(&format!("max_retained_messages = {MAX_RETAINED}\n")),
            "{c}"
        );
        let per_node = [NodeTopic::Desired, NodeTopic::Status, NodeTopic::Online].len();
        assert!(
            MAX_RETAINED > per_node * MAX_SESSIONS as usize,
            "room beyond the nodes' own retained topics"
        );
    }
}
