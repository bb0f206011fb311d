//! The agent's MQTT link: a [`Session`] with the node's options (client id = node name, clean
//! session, Last Will = offline presence) and subscriptions (its `desired` and `blob` topics,
//! its modules' application filters, and the fleet-wide topics of the chunks it fetches), plus
//! non-blocking publishing for the agent loop.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS};
use tokio::sync::mpsc;
use wasmfleet_common::mqtt::{Backoff, Session};
use wasmfleet_common::subscribe::Qos;
use wasmfleet_proto::topic::{NodeTopic, blob_topic, node_topic};
use wasmfleet_proto::{Digest, Presence, encode};

pub use wasmfleet_common::mqtt::SessionEvent as LinkEvent;

/// Reconnect delays: a fleet that lost its broker must not come back all at once.
pub const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(200),
    max: Duration::from_secs(30),
};
/// Keep-alive interval: how fast the broker notices a dead node and fires its Last Will.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest packet either way; above `MAX_FRAME_LEN` (256 KiB) plus topic and header.
pub const MAX_PACKET: usize = 300 * 1024;
/// Requests the client queues before `publish` reports a full queue.
const QUEUE: usize = 64;

/// Handle to the MQTT connection; dropping it stops the session.
#[derive(Debug)]
pub struct MqttLink {
    session: Session,
    node: String,
    /// Subscriptions beyond the node's own topics.
    extra: Mutex<Extra>,
}

/// The subscriptions that come and go: application filters and fleet-wide chunk topics.
#[derive(Debug, Default)]
struct Extra {
    app: Vec<String>,
    blobs: Vec<String>,
}

/// Options for `node`: client id = node name, clean session, Last Will = offline presence.
pub fn options(host: &str, port: u16, node: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(node, host, port);
    opts.set_clean_session(true)
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            node_topic(node, NodeTopic::Online),
            encode(&Presence::Offline),
            QoS::AtLeastOnce,
            true,
        ));
    opts
}

/// The subscriptions a node keeps granted: its desired state and its blob replies.
pub fn node_filters(node: &str) -> Vec<(String, Qos)> {
    [NodeTopic::Desired, NodeTopic::Blob]
        .into_iter()
        .map(|kind| (node_topic(node, kind), Qos::AtLeastOnce))
        .collect()
}

impl MqttLink {
    /// Connects in the background as `node`; events arrive on `events`.
    pub fn start(opts: MqttOptions, node: &str, events: mpsc::Sender<LinkEvent>) -> MqttLink {
        MqttLink {
            session: Session::spawn(opts, QUEUE, node_filters(node), BACKOFF, events),
            node: node.to_owned(),
            extra: Mutex::default(),
        }
    }

    /// Queues a publish without waiting. Returns false if the request queue is full (the
    /// broker is slow or unreachable); callers resend what matters (status is level-triggered).
    pub fn publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        match self
            .session
            .client()
            .try_publish(topic.clone(), qos, retain, payload)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%topic, error = %e, "publish dropped");
                false
            }
        }
    }

    /// Subscribes to the node's topics plus `app_filters` (its modules' application filters,
    /// on the broker) and the chunk topics of [`MqttLink::set_blob_topics`], and to nothing
    /// else. `node` is the link's own node.
    pub fn set_app_filters(&self, node: &str, app_filters: &[String]) {
        debug_assert_eq!(node, self.node);
        let mut extra = self.extra.lock().unwrap_or_else(PoisonError::into_inner);
        extra.app = app_filters.to_vec();
        self.apply(&extra);
    }

    /// Subscribes to the fleet-wide topics of exactly `chunks` (`(blob, chunk number)`: what
    /// fan-out transfers still need), keeping the node's and the application subscriptions.
    /// Cheap when nothing changed.
    pub fn set_blob_topics(&self, chunks: impl IntoIterator<Item = (Digest, u64)>) {
        let blobs: Vec<String> = chunks.into_iter().map(|(d, c)| blob_topic(&d, c)).collect();
        let mut extra = self.extra.lock().unwrap_or_else(PoisonError::into_inner);
        if extra.blobs != blobs {
            extra.blobs = blobs;
            self.apply(&extra);
        }
    }

    fn apply(&self, extra: &Extra) {
        let mut filters = node_filters(&self.node);
        filters.extend(
            extra
                .app
                .iter()
                .chain(&extra.blobs)
                .map(|f| (f.clone(), Qos::AtLeastOnce)),
        );
        self.session.set_filters(filters);
    }

    /// Whether the topic of chunk `chunk` of `digest` is subscribed (granted on this
    /// connection).
    pub fn blob_granted(&self, digest: &Digest, chunk: u64) -> bool {
        self.session.granted(&blob_topic(digest, chunk))
    }

    /// A publisher for application messages: QoS 1, not retained, never waiting (false when
    /// the request queue is full).
    pub fn app_publisher(&self) -> crate::apps::Publisher {
        let client = self.session.client().clone();
        Box::new(move |topic, payload| {
            client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
                .is_ok()
        })
    }

    /// Whether the node's subscriptions are granted on the current connection.
    pub fn subscribed(&self) -> bool {
        self.session.subscribed()
    }

    /// Queues a DISCONNECT; [`LinkEvent::Closed`] follows once it is sent.
    pub fn disconnect(&self) {
        let _ = self.session.client().try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_last_will_and_filters_name_the_node() {
        let opts = options("127.0.0.1", 1883, "gw-1");
        let will = opts.last_will().unwrap();
        assert_eq!(will.topic, "wf/v1/n/gw-1/online");
        assert!(will.retain);
        assert_eq!(
            wasmfleet_proto::decode::<Presence>(&will.message).unwrap(),
            Presence::Offline
        );
        assert!(opts.clean_session());
        assert_eq!(opts.max_packet_size(), MAX_PACKET);
        let topics: Vec<_> = node_filters("gw-1").into_iter().map(|(t, _)| t).collect();
        assert_eq!(topics, ["wf/v1/n/gw-1/desired", "wf/v1/n/gw-1/blob"]);
    }
}
