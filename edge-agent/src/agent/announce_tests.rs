//! An announcement the link cannot queue at connect is sent with a later beat.
//!
//! A node's `Online` is what makes the hub know it; a node announces itself only when it
//! connects. If the link's request queue is full at that moment (modules published while the
//! broker was away), the announcement must not be lost for the whole connection.

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use wasmfleet_common::BrokerUrl;
use wasmfleet_proto::topic::{NodeTopic, node_topic};
use wasmfleet_proto::{Presence, decode};

use super::*;

/// A broker that holds its CONNACK until `go` fires (the client's requests wait in its queue
/// meanwhile), then reports the topic of every PUBLISH.
async fn slow_broker(
    listener: TcpListener,
    go: oneshot::Receiver<()>,
    topics: mpsc::UnboundedSender<(String, Vec<u8>)>,
) {
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut go = Some(go);
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    loop {
        let packet = loop {
            match Packet::read(&mut buf, 1 << 20) {
                Ok(p) => break p,
                Err(_) => {
                    if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            }
        };
        match packet {
            Packet::Connect(_) => {
                let _ = go.take().unwrap().await;
                ConnAck::new(ConnectReturnCode::Success, false)
                    .write(&mut out)
                    .unwrap();
            }
            Packet::Publish(p) => {
                let _ = topics.send((p.topic, p.payload.to_vec()));
            }
            _ => {}
        }
        if !out.is_empty() && sock.write_all(&out.split()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_refused_by_a_full_queue_goes_out_with_the_next_beat() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go_tx, go_rx) = oneshot::channel();
    let (topics_tx, mut topics) = mpsc::unbounded_channel();
    tokio::spawn(slow_broker(listener, go_rx, topics_tx));

    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::new(Config {
        broker: BrokerUrl {
            host: "127.0.0.1".into(),
            port,
        },
        node: "edge-1".into(),
        data_dir: dir.path().to_path_buf(),
        labels: vec![],
        memory_bytes: 1 << 30,
        max_workloads: 8,
        log_limits: Default::default(),
        devices: Default::default(),
        mcus: vec![],
        heartbeat: Duration::from_secs(5),
    })
    .unwrap();
    let (ev_tx, _events) = mpsc::channel(16);
    let opts = mqtt::options("127.0.0.1", port, "edge-1");
    let link = MqttLink::start(opts, "edge-1", ev_tx);
    // Fill the link's queue while the broker keeps it waiting.
    let filled = (0..1000)
        .take_while(|_| link.publish("app/x".into(), QoS::AtMostOnce, false, vec![0]))
        .count();
    assert!(filled < 1000, "the link's queue never filled");
    agent.link = Some(link);

    // The agent learns of the connection while its queue is still full.
    agent.on_link_event(LinkEvent::Connected);
    assert!(
        !agent.announced,
        "an announcement counted as sent though the queue refused it"
    );

    // The broker lets the session in: the queue drains. The next beat announces the node.
    go_tx.send(()).unwrap();
    let online = node_topic("edge-1", NodeTopic::Online);
    let announced = async {
        let mut beats = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = beats.tick() => agent.beat(),
                Some((topic, payload)) = topics.recv() => {
                    if topic == online {
                        return decode::<Presence>(&payload).unwrap();
                    }
                }
            }
        }
    };
    let presence = tokio::time::timeout(Duration::from_secs(10), announced)
        .await
        .expect("the node never announced itself after its queue drained");
    assert!(matches!(presence, Presence::Online(_)));
}
