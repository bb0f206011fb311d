//! Subscriptions a broker refuses at connect: the agent must not look healthy while deaf.
//!
//! A scripted broker (rumqttc's own MQTT 3.1.1 codec on a loopback socket) refuses every QoS 1
//! subscription, as NATS does past its consumer limit, and grants QoS 0. The agent must notice
//! the refusal in the SUBACK, subscribe again at QoS 0, and then converge to the retained
//! desired state: its status reports the generation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use edge_agent::{Agent, Config};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PingResp, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wasmfleet_common::BrokerUrl;
use wasmfleet_proto::{DesiredState, NodeStatus};

/// Every SUBSCRIBE the broker saw: `(topic, requested QoS)` per filter.
type Seen = Arc<Mutex<Vec<Vec<(String, QoS)>>>>;

async fn serve(mut sock: TcpStream, seen: Seen, statuses: mpsc::UnboundedSender<NodeStatus>) {
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
                ConnAck::new(ConnectReturnCode::Success, false)
                    .write(&mut out)
                    .unwrap();
            }
            Packet::Subscribe(s) => {
                let asked: Vec<(String, QoS)> =
                    s.filters.iter().map(|f| (f.path.clone(), f.qos)).collect();
                seen.lock().unwrap().push(asked.clone());
                let codes = asked
                    .iter()
                    .map(|(_, q)| match q {
                        QoS::AtMostOnce => SubscribeReasonCode::Success(QoS::AtMostOnce),
                        _ => SubscribeReasonCode::Failure,
                    })
                    .collect();
                SubAck::new(s.pkid, codes).write(&mut out).unwrap();
                for (topic, qos) in asked {
                    if topic.ends_with("/desired") && qos == QoS::AtMostOnce {
                        // The retained desired state, delivered on a granted subscription.
                        let state = DesiredState {
                            fleet: 1,
                            generation: 7,
                            workloads: vec![],
                        };
                        let mut p =
                            Publish::new(topic, QoS::AtMostOnce, wasmfleet_proto::encode(&state));
                        p.retain = true;
                        p.write(&mut out).unwrap();
                    }
                }
            }
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    PubAck::new(p.pkid).write(&mut out).unwrap();
                }
                if p.topic.ends_with("/status")
                    && let Ok(s) = wasmfleet_proto::decode::<NodeStatus>(&p.payload)
                {
                    let _ = statuses.send(s);
                }
            }
            Packet::PingReq => {
                PingResp.write(&mut out).unwrap();
            }
            Packet::Disconnect => return,
            _ => {}
        }
        if !out.is_empty() && sock.write_all(&out.split()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_qos1_subscription_falls_back_to_qos0_and_the_node_converges() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let (status_tx, mut statuses) = mpsc::unbounded_channel();
    let broker_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, broker_seen.clone(), status_tx.clone()));
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(Config {
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
        heartbeat: std::time::Duration::from_secs(5),
    })
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stop_rx.await;
    }));

    let converged = async {
        while let Some(s) = statuses.recv().await {
            if s.observed_fleet == 1 && s.observed_generation == 7 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), converged)
        .await
        .expect("the node never acted on the desired state it could only get at QoS 0");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        [
            ("wf/v1/n/edge-1/desired".to_string(), QoS::AtLeastOnce),
            ("wf/v1/n/edge-1/blob".to_string(), QoS::AtLeastOnce),
        ],
        "asked for QoS 1 first"
    );
    assert!(
        seen[1..]
            .iter()
            .flatten()
            .all(|(_, q)| *q == QoS::AtMostOnce),
        "then QoS 0 for what was refused: {seen:?}"
    );
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("shutdown hung")
        .unwrap();
}
