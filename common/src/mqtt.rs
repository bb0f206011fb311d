//! The MQTT session under the hub's and the agent's links (rumqttc).
//!
//! [`Session::spawn`] drives a rumqttc event loop in a task: it reconnects with jittered
//! backoff ([`crate::backoff`]), keeps the wanted subscriptions granted ([`crate::subscribe`]:
//! SUBACKs checked, refusals retried, QoS 1 downgraded to 0 where a broker refuses it), and
//! hands every event to the owner over a channel. It never publishes from inside the loop that
//! drains the request queue (that can deadlock); owners publish through [`Session::client`].
//!
//! Subscription retries run in a second small task on a timer, because a rumqttc `poll()` must
//! not be cancelled mid-write (a `select!` against a timer could lose a request).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::Reconnect;
use crate::subscribe::{Qos, Subscriptions};

/// What the session reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A CONNACK arrived (a clean session: announce presence, send state again).
    Connected,
    /// The connection failed or was lost; the session retries on its own.
    Disconnected(String),
    /// A message on one of the subscriptions.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// Our DISCONNECT went out (graceful shutdown).
    Closed,
}

/// Reconnect delays of a session.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay ceiling.
    pub min: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
}

/// A running session; dropping it stops its tasks.
#[derive(Debug)]
pub struct Session {
    client: AsyncClient,
    subs: SharedSubs,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Subscription state shared by the driver and the retry timer, with its time origin.
#[derive(Debug, Clone)]
struct SharedSubs(Arc<Mutex<(Subscriptions, Instant, bool)>>);

impl SharedSubs {
    fn with<T>(&self, f: impl FnOnce(&mut Subscriptions, Duration, &mut bool) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (subs, origin, connected) = &mut *g;
        let now = origin.elapsed();
        f(subs, now, connected)
    }

    /// Queues whatever subscription and unsubscription is due, without waiting.
    fn send_due(&self, client: &AsyncClient) {
        // Unsubscriptions first: the broker counts subscriptions against a per-session limit.
        self.unsubscribe_due(client);
        self.with(|subs, now, connected| {
            if !*connected {
                return;
            }
            let Some(request) = subs.poll(now) else {
                return;
            };
            let filters = request
                .iter()
                .map(|(t, q)| SubscribeFilter::new(t.clone(), to_rumqttc(*q)));
            match client.try_subscribe_many(filters) {
                Ok(()) => subs.sent(&request, now),
                Err(e) => tracing::debug!(error = %e, "subscription not queued yet; retrying"),
            }
        });
    }

    /// Queues the UNSUBSCRIBEs due, in order, as far as the client's queue takes them.
    fn unsubscribe_due(&self, client: &AsyncClient) {
        self.with(|subs, _, connected| {
            if !*connected {
                return;
            }
            let queued = subs
                .unsubscribes()
                .iter()
                .take_while(|topic| client.try_unsubscribe(topic.as_str()).is_ok())
                .count();
            subs.unsubscribes_sent(queued);
        });
    }
}

fn to_rumqttc(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

/// How often due subscriptions (refused, or their SUBACK lost) are retried.
const RETRY_TICK: Duration = Duration::from_secs(1);

impl Session {
    /// Starts a session: `queue` is the client's request queue length, `filters` the
    /// subscriptions to keep granted. Events go to `events`; the session ends when that
    /// channel closes. TCP_NODELAY is on: the protocol is request/response-heavy, and Nagle's
    /// algorithm added tens of milliseconds to every exchange.
    pub fn spawn(
        opts: MqttOptions,
        queue: usize,
        filters: Vec<(String, Qos)>,
        backoff: Backoff,
        events: mpsc::Sender<SessionEvent>,
    ) -> Session {
        let (client, mut eventloop) = AsyncClient::new(opts, queue);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let subs = SharedSubs(Arc::new(Mutex::new((
            Subscriptions::new(filters),
            Instant::now(),
            false,
        ))));
        let driver = tokio::spawn(drive(
            eventloop,
            client.clone(),
            subs.clone(),
            Reconnect::new(backoff.min, backoff.max),
            events,
        ));
        let retry = {
            let (client, subs) = (client.clone(), subs.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RETRY_TICK).await;
                    subs.send_due(&client);
                }
            })
        };
        Session {
            client,
            subs,
            tasks: [driver, retry],
        }
    }

    /// The client handle to publish with.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Wants exactly `filters` from now on: new ones are subscribed at once, dropped ones
    /// unsubscribed as soon as the client's queue takes the UNSUBSCRIBE (tried again every
    /// second until it does: each subscription left behind counts against the broker's
    /// per-session limit).
    pub fn set_filters(&self, filters: Vec<(String, Qos)>) {
        self.subs.with(|s, _, _| s.set_filters(filters));
        self.subs.send_due(&self.client);
    }

    /// Whether every wanted subscription is granted on the current connection.
    pub fn subscribed(&self) -> bool {
        self.subs
            .with(|s, _, connected| *connected && s.all_granted())
    }

    /// Whether the subscription to `topic` is granted on the current connection (at either
    /// QoS): what a client waits for before it asks for something answered on that topic.
    pub fn granted(&self, topic: &str) -> bool {
        self.subs
            .with(|s, _, connected| *connected && s.granted(topic).is_some())
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subs: SharedSubs,
    mut reconnect: Reconnect,
    events: mpsc::Sender<SessionEvent>,
) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                reconnect.reset();
                subs.with(|s, _, connected| {
                    s.on_connected();
                    *connected = true;
                });
                subs.send_due(&client);
                SessionEvent::Connected
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let codes: Vec<Option<Qos>> = ack
                    .return_codes
                    .iter()
                    .map(|c| match c {
                        SubscribeReasonCode::Success(QoS::AtMostOnce) => Some(Qos::AtMostOnce),
                        SubscribeReasonCode::Success(_) => Some(Qos::AtLeastOnce),
                        SubscribeReasonCode::Failure => None,
                    })
                    .collect();
                let outcome = subs.with(|s, now, _| s.on_suback(&codes, now));
                if let Some(o) = outcome {
                    for t in &o.downgraded {
                        tracing::warn!(topic = %t, "broker refused a QoS 1 subscription; subscribing at QoS 0");
                    }
                    for t in &o.refused {
                        tracing::error!(topic = %t, "broker refused the subscription; retrying with backoff");
                    }
                    if !o.granted.is_empty() {
                        tracing::debug!(granted = ?o.granted, "subscribed");
                    }
                }
                subs.send_due(&client);
                continue;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => SessionEvent::Message {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Ok(Event::Outgoing(Outgoing::Disconnect)) => SessionEvent::Closed,
            Ok(_) => continue,
            Err(e) => {
                subs.with(|_, _, connected| *connected = false);
                if events
                    .send(SessionEvent::Disconnected(e.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(reconnect.next_delay()).await;
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
