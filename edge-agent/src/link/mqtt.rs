//! MQTT driver (rumqttc). A background task polls the event loop and turns packets into
//! [`LinkEvent`]s; the agent loop decides what they mean and publishes through [`MqttLink`].
//!
//! The broker may be down for hours: reconnects use full-jitter exponential backoff
//! ([`backoff`]) so a fleet coming back at once does not stampede it.

use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wasmfleet_proto::topic::{NodeTopic, node_topic};
use wasmfleet_proto::{Presence, encode};

/// First reconnect delay ceiling.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Largest reconnect delay ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Keep-alive interval: how fast the broker notices a dead node and fires its Last Will.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest packet either way; above `MAX_FRAME_LEN` (256 KiB) plus topic and header.
pub const MAX_PACKET: usize = 300 * 1024;

/// What the driver reports to the agent loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A CONNACK arrived: the session is new (clean session), subscribe and announce again.
    Connected,
    /// The connection failed or was lost; the driver retries on its own.
    Disconnected(String),
    /// A message on one of our subscriptions.
    Message {
        /// Topic it came on.
        topic: String,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// Our DISCONNECT went out (graceful shutdown).
    Closed,
}

/// Handle to the MQTT connection; dropping it stops the driver task.
#[derive(Debug)]
pub struct MqttLink {
    client: AsyncClient,
    task: JoinHandle<()>,
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.task.abort();
    }
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

impl MqttLink {
    /// Starts the driver; events arrive on `events`. Connecting happens in the background.
    pub fn start(opts: MqttOptions, events: mpsc::Sender<LinkEvent>) -> MqttLink {
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let task = tokio::spawn(drive(eventloop, events));
        MqttLink { client, task }
    }

    /// Queues a publish without waiting. Returns false if the request queue is full (the
    /// broker is slow or unreachable); callers resend status on reconnect anyway.
    pub fn publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        match self.client.try_publish(topic.clone(), qos, retain, payload) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%topic, error = %e, "publish dropped");
                false
            }
        }
    }

    /// Subscribes to the node's desired-state and blob-reply topics (QoS 1).
    pub fn subscribe_node(&self, node: &str) {
        for kind in [NodeTopic::Desired, NodeTopic::Blob] {
            let topic = node_topic(node, kind);
            if let Err(e) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                tracing::error!(%topic, error = %e, "cannot queue subscription");
            }
        }
    }

    /// Queues a DISCONNECT; [`LinkEvent::Closed`] follows once it is sent.
    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// Full-jitter backoff: a uniformly random delay up to `min(200 ms · 2^attempt, 30 s)`.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = BACKOFF_MIN
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX);
    Duration::from_millis(rng.random_range(0..=ceiling.as_millis() as u64))
}

/// The thin event loop: packets in, events out, reconnect with backoff on errors.
async fn drive(mut eventloop: rumqttc::EventLoop, events: mpsc::Sender<LinkEvent>) {
    let mut attempt = 0u32;
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                LinkEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => LinkEvent::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(pkid = ack.pkid, codes = ?ack.return_codes, "broker refused a subscription");
                }
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => LinkEvent::Closed,
            Ok(_) => continue,
            Err(e) => {
                let delay = backoff(attempt, &mut rand::rng());
                attempt = attempt.saturating_add(1);
                tracing::debug!(error = %e, ?delay, "MQTT connection down; retrying");
                if events
                    .send(LinkEvent::Disconnected(e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let mut rng = rand::rng();
        for attempt in [0, 1, 5, 20, 100] {
            let ceiling = BACKOFF_MIN
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
                .min(BACKOFF_MAX);
            for _ in 0..50 {
                assert!(backoff(attempt, &mut rng) <= ceiling);
            }
        }
        // Full jitter: delays of the same attempt differ (not all equal to the ceiling).
        let delays: std::collections::BTreeSet<_> =
            (0..50).map(|_| backoff(10, &mut rng)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn options_carry_last_will() {
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
    }
}
