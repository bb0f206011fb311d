//! The hub's MQTT client: a [`Session`] subscribed to every node's presence, status, logs and
//! chunk requests (per node and fan-out), and a router that decodes what arrives and leaves it in the [`Inbox`]
//! without ever waiting (the session's loop must keep reading its socket). Desired states and
//! chunk replies go out through [`Link::publish`] from other tasks.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rumqttc::{MqttOptions, QoS};
use tokio::sync::{mpsc, watch};
use wasmfleet_common::BrokerUrl;
use wasmfleet_common::mqtt::{Backoff, Session, SessionEvent};
use wasmfleet_common::subscribe::Qos;
use wasmfleet_proto::topic::{self, NodeTopic};
use wasmfleet_proto::{BlobRequest, Heartbeat, decode};

use super::inbox::Inbox;
use crate::clock::now_ms;

/// Reconnect delays of the hub's client.
const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(100),
    max: Duration::from_secs(10),
};

/// Requests (publications, subscriptions) the hub's client queues while its event loop is
/// busy or the broker is away.
const REQUEST_QUEUE: usize = 4096;

/// How long a shutdown waits for its DISCONNECT to go out.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

/// How often the link looks for nodes beating without an announcement.
const REREAD_EVERY: Duration = Duration::from_secs(1);

/// Most nodes whose retained announcements are read again at once (one SUBSCRIBE of this
/// many filters a second; the embedded broker grants the hub's client room for them, see
/// [`crate::mqtt::broker`]).
pub const REREAD_BATCH: usize = 1_000;

/// How long the hub's client lets the broker take to answer a PINGREQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// A broker elsewhere: short, so a half-open link of the hub's own is noticed (and
    /// heartbeat silence paused, see `Inbox::disconnected`) within 8 s, before any node's
    /// 15 s heartbeat deadline.
    External,
    /// A broker the hub runs on this machine (rmqtt in its process, or a mosquitto it started
    /// on loopback and sees exit): the link cannot be half-open, and a short keep-alive only
    /// made a hub busy with a connect storm or an apply drop its own session (and every
    /// message queued for it) because the PINGRESP waited behind them. With mosquitto and
    /// 100,000 hollow nodes that happened six times in one apply.
    Own,
}

impl KeepAlive {
    fn duration(self) -> Duration {
        match self {
            KeepAlive::External => Duration::from_secs(4),
            KeepAlive::Own => Duration::from_secs(60),
        }
    }
}

/// The hub's subscriptions plus, for a moment, the `online` topics of `nodes`: a new
/// subscription delivers the retained announcement the hub lost.
fn filters_rereading(nodes: &[String]) -> Vec<(String, Qos)> {
    let mut filters = hub_filters();
    filters.extend(
        nodes
            .iter()
            .map(|n| (topic::node_topic(n, NodeTopic::Online), Qos::AtLeastOnce)),
    );
    filters
}

/// Handle for publishing; clone freely.
#[derive(Debug, Clone)]
pub struct Link {
    client: rumqttc::AsyncClient,
    closed: watch::Receiver<bool>,
}

/// The subscriptions the hub keeps granted.
pub fn hub_filters() -> Vec<(String, Qos)> {
    vec![
        (topic::ALL_ONLINE.into(), Qos::AtLeastOnce),
        (topic::ALL_STATUS.into(), Qos::AtLeastOnce),
        (topic::ALL_LOGS.into(), Qos::AtMostOnce),
        (topic::ALL_BLOB_REQUESTS.into(), Qos::AtLeastOnce),
        (topic::ALL_BLOB_WANTS.into(), Qos::AtLeastOnce),
        (topic::ALL_HEARTBEATS.into(), Qos::AtMostOnce),
    ]
}

impl Link {
    /// Connects (in the background, with reconnects) and returns the handle and the router
    /// task, which owns the session and ends when `shutdown` fires. Once a second the task
    /// reads again the retained announcements of nodes heard beating without one
    /// ([`Inbox::unannounced`]).
    pub fn start(
        url: &BrokerUrl,
        keep_alive: KeepAlive,
        inbox: Inbox,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Link, tokio::task::JoinHandle<()>) {
        let suffix: u32 = rand::rng().random();
        let mut opts = MqttOptions::new(
            format!("wasmfleet-hub-{suffix:08x}"),
            url.host.clone(),
            url.port,
        );
        opts.set_keep_alive(keep_alive.duration());
        opts.set_clean_session(true);
        opts.set_max_packet_size(
            wasmfleet_proto::MAX_FRAME_LEN + 4096,
            wasmfleet_proto::MAX_FRAME_LEN + 4096,
        );
        opts.set_inflight(256);
        let (events_tx, mut events) = mpsc::channel(1024);
        let session = Session::spawn(opts, REQUEST_QUEUE, hub_filters(), BACKOFF, events_tx);
        let client = session.client().clone();
        let (closed_tx, closed) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut reread = tokio::time::interval(REREAD_EVERY);
            reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut rereading = false;
            loop {
                let event = tokio::select! {
                    _ = shutdown.changed() => return,
                    event = events.recv() => event,
                    _ = reread.tick() => {
                        // The previous batch's subscriptions go; this batch's come.
                        let nodes = inbox.unannounced(now_ms(), REREAD_BATCH);
                        if !nodes.is_empty() {
                            tracing::info!(
                                nodes = nodes.len(),
                                first = %nodes[0],
                                "reading again the retained announcements of nodes heard without one"
                            );
                        }
                        if rereading || !nodes.is_empty() {
                            session.set_filters(filters_rereading(&nodes));
                        }
                        rereading = !nodes.is_empty();
                        continue;
                    }
                };
                match event {
                    None => return,
                    Some(SessionEvent::Connected) => {
                        tracing::info!("connected to MQTT broker");
                        inbox.connected(now_ms());
                    }
                    Some(SessionEvent::Disconnected(e)) => {
                        tracing::warn!("MQTT connection error: {e}; reconnecting");
                        inbox.disconnected();
                    }
                    Some(SessionEvent::Message { topic, payload }) => {
                        route(&inbox, &topic, payload)
                    }
                    Some(SessionEvent::Closed) => {
                        let _ = closed_tx.send(true);
                    }
                }
            }
        });
        (Link { client, closed }, task)
    }

    /// Publishes at QoS 1, waiting for room in the client's queue.
    pub async fn publish(&self, topic: String, payload: impl Into<Bytes>, retain: bool) {
        if let Err(e) = self
            .client
            .publish_bytes(topic.clone(), QoS::AtLeastOnce, retain, payload.into())
            .await
        {
            tracing::warn!(%topic, "MQTT publish failed: {e}");
        }
    }

    /// Disconnects cleanly if it can within [`DISCONNECT_WAIT`]: queues DISCONNECT and waits
    /// until it went out. Both are bounded: with the broker gone, the client's queue stays
    /// full of publications that will never be sent, and a shutdown waiting for room in it
    /// never ended (a hub on SIGTERM whose broker stopped at the same moment kept running).
    pub async fn disconnect(&self) {
        let mut closed = self.closed.clone();
        let sent = async {
            if self.client.disconnect().await.is_ok() {
                let _ = closed.wait_for(|c| *c).await;
            }
        };
        if tokio::time::timeout(DISCONNECT_WAIT, sent).await.is_err() {
            tracing::warn!("no clean MQTT disconnect within {DISCONNECT_WAIT:?}; closing anyway");
        }
    }
}

/// Decodes one publication into the inbox; malformed ones are logged and dropped, never fatal.
/// The node is the one the topic names: payloads carry no identity.
fn route(inbox: &Inbox, topic_name: &str, payload: Vec<u8>) {
    let Some((node, kind)) = topic::parse_node_topic(topic_name) else {
        return;
    };
    if let Err(e) = wasmfleet_proto::name::validate(node) {
        tracing::warn!(
            topic = topic_name,
            "ignoring message from invalid node name: {e}"
        );
        return;
    }
    let warn = |e: wasmfleet_proto::DecodeError| {
        tracing::warn!(topic = topic_name, "dropping undecodable message: {e}");
    };
    match kind {
        // The most frequent message of an idle fleet: decoded and recorded without allocating.
        NodeTopic::Heartbeat => match decode::<Heartbeat>(&payload) {
            Ok(beat) => return inbox.heartbeat(node, beat, now_ms()),
            Err(e) => return warn(e),
        },
        // A fleet fetching a new module sends thousands: coalesced without allocating.
        NodeTopic::BlobWant => match decode::<BlobRequest>(&payload) {
            Ok(r) => return inbox.blob_want(node, &r),
            Err(e) => return warn(e),
        },
        _ => {}
    }
    let node = node.to_owned();
    match kind {
        // A cleared retained message (an operator removing a decommissioned node).
        NodeTopic::Online | NodeTopic::Status if payload.is_empty() => {}
        NodeTopic::Online => match decode(&payload) {
            Ok(p) => inbox.presence(node, p, now_ms()),
            Err(e) => warn(e),
        },
        NodeTopic::Status => match decode(&payload) {
            Ok(s) => inbox.status(node, s),
            Err(e) => warn(e),
        },
        // Decoded by the log writer, off this loop.
        NodeTopic::Logs => inbox.logs(node, payload),
        NodeTopic::BlobRequest => match decode::<BlobRequest>(&payload) {
            Ok(r) => inbox.blob_request(node, r),
            Err(e) => warn(e),
        },
        NodeTopic::Desired | NodeTopic::Blob | NodeTopic::Heartbeat | NodeTopic::BlobWant => {}
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::{Digest, NodeStatus};

    use super::*;
    use crate::mqtt::inbox::FleetMessage;

    #[tokio::test]
    async fn disconnect_ends_when_the_broker_is_gone_and_the_queue_is_full() {
        // Nothing listens on this port: the link never connects, so nothing drains its queue.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url: BrokerUrl = format!("mqtt://127.0.0.1:{port}").parse().expect("url");
        let (inbox, _, _) = Inbox::new();
        let (_stop, shutdown) = watch::channel(false);
        let (link, _task) = Link::start(&url, KeepAlive::External, inbox, shutdown);
        let mut queued = 0;
        while link
            .client
            .try_publish("wf/v1/x", QoS::AtLeastOnce, false, vec![0u8])
            .is_ok()
        {
            queued += 1;
        }
        assert_eq!(queued, REQUEST_QUEUE, "the queue is full");
        let waited = tokio::time::timeout(DISCONNECT_WAIT * 5, link.disconnect()).await;
        assert!(
            waited.is_ok(),
            "disconnect waited for room in a queue nobody drains"
        );
    }

    #[test]
    fn garbage_is_dropped_and_identity_comes_from_the_topic() {
        let (inbox, _, mut blobs) = Inbox::new();
        route(&inbox, "wf/v1/n/a/status", b"\x02\xff\xff".to_vec());
        route(&inbox, "wf/v1/n/a/status", vec![]);
        route(&inbox, "wf/v1/n/a/online", vec![]);
        let status = wasmfleet_proto::encode(&NodeStatus::default());
        route(&inbox, "wf/v1/n/Bad!/status", status.clone());
        assert!(inbox.fleet.drain().is_empty());
        route(&inbox, "wf/v1/n/a/status", status);
        assert!(matches!(&inbox.fleet.drain()[..], [FleetMessage::Status(n, _)] if n == "a"));
        let req = BlobRequest {
            digest: Digest([1; 32]),
            offset: 0,
            len: 10,
        };
        route(
            &inbox,
            "wf/v1/n/gw-2/blob-req",
            wasmfleet_proto::encode(&req),
        );
        assert_eq!(
            blobs.direct.try_recv().unwrap(),
            ("gw-2".to_string(), req.clone())
        );
        // The fan-out route: coalesced for publication on the blob topic, not queued per node.
        route(
            &inbox,
            "wf/v1/n/gw-2/blob-want",
            wasmfleet_proto::encode(&req),
        );
        route(
            &inbox,
            "wf/v1/n/gw-3/blob-want",
            wasmfleet_proto::encode(&req),
        );
        assert!(blobs.direct.try_recv().is_err());
        assert_eq!(blobs.fan_out.pending(), 1, "one publication for both");
        assert!(
            hub_filters()
                .iter()
                .any(|(t, _)| t == "wf/v1/n/+/blob-want")
        );
    }
}
