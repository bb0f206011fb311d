//! Chunk fan-out: agents fetching the same new module ask on `blob-want`, and the hub answers
//! on each chunk's fleet-wide topic once for all of them, not once per agent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::common::*;

/// Messages seen on the broker, by kind.
#[derive(Debug, Default)]
struct Seen {
    /// Chunk requests on `blob-want`.
    wants: AtomicU64,
    /// Chunk requests on `blob-req`.
    requests: AtomicU64,
    /// The hub's publications on blob topics.
    published: AtomicU64,
    /// The hub's replies on nodes' own `blob` topics.
    replies: AtomicU64,
}

/// Subscribes a client of the test to every chunk request and reply; returns once subscribed.
fn observe(mqtt: &str) -> Arc<Seen> {
    let addr = mqtt.strip_prefix("mqtt://").expect("an mqtt:// URL");
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut opts = MqttOptions::new("fanout-observer", host, port.parse().unwrap());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(opts, 16);
    for filter in [
        "wf/v1/n/+/blob-want",
        "wf/v1/n/+/blob-req",
        "wf/v1/blob/+/+",
        "wf/v1/n/+/blob",
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    }
    let seen = Arc::new(Seen::default());
    let (subscribed, acked) = mpsc::channel();
    let counts = seen.clone();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let counter = match p.topic.rsplit('/').next() {
                        Some("blob-want") => &counts.wants,
                        Some("blob-req") => &counts.requests,
                        Some("blob") => &counts.replies,
                        _ => &counts.published,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    for _ in 0..4 {
        acked
            .recv_timeout(Duration::from_secs(10))
            .expect("the observer's subscriptions were granted");
    }
    seen
}

#[test]
fn agents_fetching_one_module_share_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let seen = observe(&hub.mqtt);
    let _agents: Vec<Proc> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|n| start_agent(dir.path(), &hub.mqtt, n))
        .collect();
    hub.wait_nodes_ready(3);

    let app = manifest(dir.path(), "hello", 3, &["--interval", "1s"], "");
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("hello", 3, "Running");
    std::thread::sleep(Duration::from_millis(300));

    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (wants, requests, published, replies) = (
        n(&seen.wants),
        n(&seen.requests),
        n(&seen.published),
        n(&seen.replies),
    );
    let report = format!(
        "{wants} asks on blob-want, {published} publications on chunk topics, {replies} replies on node topics (asks just after a publication), {requests} asks on blob-req"
    );
    eprintln!("{report}");
    assert!(published > 0, "{report}");
    assert!(
        published + replies < wants,
        "three agents fetching the same artifact cost the hub fewer publications than asks: {report}"
    );
    assert_eq!(
        requests, 0,
        "no agent fell back to asking per node: {report}"
    );
}
