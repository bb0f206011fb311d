//! The hub's MQTT client: subscribes to every node's presence, status, logs and blob
//! requests, and publishes desired states and blob chunks.
//!
//! The event loop is thin: it turns packets into [`Inbound`] values for the serve loop and
//! never publishes itself (publishing from inside the loop that drains the request queue can
//! deadlock); [`Link::publish`] goes through the client handle from other tasks.

use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::{mpsc, watch};
use wasmfleet_proto::topic::{self, NodeTopic};
use wasmfleet_proto::{BlobRequest, LogBatch, NodeStatus, Presence, decode};

/// A broker address parsed from `mqtt://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("mqtt://")
            .or_else(|| s.strip_prefix("tcp://"))
            .ok_or_else(|| format!("broker URL {s:?} must start with mqtt://"))?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .map_or((rest.trim_end_matches('/'), Ok(1883)), |(h, p)| {
                (h, p.parse::<u16>())
            });
        let port = port.map_err(|_| format!("broker URL {s:?} has an invalid port"))?;
        if host.is_empty() {
            return Err(format!("broker URL {s:?} has no host"));
        }
        Ok(BrokerUrl {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// What arrives from the fleet.
#[derive(Debug)]
pub enum Inbound {
    /// (Re)connected to the broker and subscribed: republish desired states.
    Connected,
    /// A node's presence changed.
    Presence(String, Presence),
    /// A node's status report.
    Status(String, NodeStatus),
    /// A node's log lines.
    Logs(String, LogBatch),
    /// A node asks for part of a blob.
    BlobRequest(BlobRequest),
}

/// Handle for publishing; clone freely.
#[derive(Debug, Clone)]
pub struct Link {
    client: AsyncClient,
}

impl Link {
    /// Connects (in the background, with reconnects) and returns the handle and the task.
    pub fn start(
        url: &BrokerUrl,
        inbound: mpsc::Sender<Inbound>,
        shutdown: watch::Receiver<bool>,
    ) -> (Link, tokio::task::JoinHandle<()>) {
        let suffix: u32 = rand::rng().random();
        let mut opts = MqttOptions::new(
            format!("wasmfleet-hub-{suffix:08x}"),
            url.host.clone(),
            url.port,
        );
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_session(true);
        opts.set_max_packet_size(
            wasmfleet_proto::MAX_FRAME_LEN + 4096,
            wasmfleet_proto::MAX_FRAME_LEN + 4096,
        );
        opts.set_request_channel_capacity(4096);
        opts.set_inflight(256);
        let (client, eventloop) = AsyncClient::new(opts, 4096);
        let task = tokio::spawn(run(client.clone(), eventloop, inbound, shutdown));
        (Link { client }, task)
    }

    /// Publishes at QoS 1.
    pub async fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        if let Err(e) = self
            .client
            .publish(topic.clone(), QoS::AtLeastOnce, retain, payload)
            .await
        {
            tracing::warn!(%topic, "MQTT publish failed: {e}");
        }
    }

    /// Disconnects cleanly.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    inbound: mpsc::Sender<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("connected to MQTT broker");
                let client = client.clone();
                let inbound = inbound.clone();
                // Subscribing awaits the request queue, which this loop drains: do it elsewhere.
                tokio::spawn(async move {
                    let filters = [
                        (topic::ALL_ONLINE, QoS::AtLeastOnce),
                        (topic::ALL_STATUS, QoS::AtLeastOnce),
                        (topic::ALL_LOGS, QoS::AtMostOnce),
                        (topic::BLOB_REQUESTS, QoS::AtLeastOnce),
                    ];
                    let subs = filters
                        .iter()
                        .map(|(t, q)| rumqttc::SubscribeFilter::new((*t).into(), *q));
                    if let Err(e) = client.subscribe_many(subs).await {
                        tracing::error!("MQTT subscribe failed: {e}");
                    }
                    let _ = inbound.send(Inbound::Connected).await;
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(
                        "the MQTT broker refused a subscription: {:?}",
                        ack.return_codes
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(msg) = parse(&p.topic, &p.payload)
                    && inbound.send(msg).await.is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures);
                tracing::warn!("MQTT connection error: {e}; retrying in {delay:?}");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Full-jitter exponential backoff: 100 ms doubling to 10 s.
fn backoff(failures: u32) -> Duration {
    let cap = 100u64.saturating_mul(1 << failures.min(7)).min(10_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// Decodes one publication; malformed ones are logged and dropped, never fatal.
fn parse(topic_name: &str, payload: &[u8]) -> Option<Inbound> {
    let warn = |e: wasmfleet_proto::DecodeError| {
        tracing::warn!(topic = topic_name, "dropping undecodable message: {e}");
    };
    if topic_name == topic::BLOB_REQUESTS {
        return decode::<BlobRequest>(payload)
            .map_err(warn)
            .ok()
            .map(Inbound::BlobRequest);
    }
    let (node, kind) = topic::parse_node_topic(topic_name)?;
    if let Err(e) = wasmfleet_proto::name::validate(node) {
        tracing::warn!(
            topic = topic_name,
            "ignoring message from invalid node name: {e}"
        );
        return None;
    }
    let node = node.to_owned();
    match kind {
        // A cleared retained message (an operator removing a decommissioned node).
        NodeTopic::Online | NodeTopic::Status if payload.is_empty() => None,
        NodeTopic::Online => decode(payload)
            .map_err(warn)
            .ok()
            .map(|p| Inbound::Presence(node, p)),
        NodeTopic::Status => decode(payload)
            .map_err(warn)
            .ok()
            .map(|s| Inbound::Status(node, s)),
        NodeTopic::Logs => decode(payload)
            .map_err(warn)
            .ok()
            .map(|l| Inbound::Logs(node, l)),
        NodeTopic::Desired | NodeTopic::Blob => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        assert_eq!(
            "mqtt://127.0.0.1:1883".parse(),
            Ok(BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1883
            })
        );
        assert_eq!(
            "mqtt://broker".parse(),
            Ok(BrokerUrl {
                host: "broker".into(),
                port: 1883
            })
        );
        assert!(
            "http://x:1"
                .parse::<BrokerUrl>()
                .unwrap_err()
                .contains("mqtt://")
        );
        assert!(
            "mqtt://x:notaport"
                .parse::<BrokerUrl>()
                .unwrap_err()
                .contains("invalid port")
        );
    }

    #[test]
    fn garbage_payloads_are_dropped_not_fatal() {
        assert!(parse("wf/v1/n/a/status", b"\x01\xff\xff").is_none());
        assert!(parse("wf/v1/n/a/status", b"").is_none());
        assert!(parse("wf/v1/n/a/online", b"").is_none());
        assert!(
            parse(
                "wf/v1/n/Bad!/status",
                &wasmfleet_proto::encode(&NodeStatus::default())
            )
            .is_none()
        );
        let ok = parse(
            "wf/v1/n/a/status",
            &wasmfleet_proto::encode(&NodeStatus::default()),
        );
        assert!(matches!(ok, Some(Inbound::Status(n, _)) if n == "a"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 1..40 {
            let d = backoff(failures);
            assert!(d <= Duration::from_secs(10));
            assert!(d >= Duration::from_millis(50));
        }
        assert!(backoff(30) >= Duration::from_secs(5));
    }
}
