//! Gateway for microcontrollers (`--mcu NAME=tcp:HOST:PORT` or `NAME=serial:PATH[@BAUD]`): each
//! attached MCU becomes a node of its own, `NAME`, with its own MQTT session (client id `NAME`,
//! Last Will "offline"), so the hub schedules onto it, and `get nodes`, `logs` and rollouts
//! treat it, like any other node.
//!
//! The bridge only relays: the node's desired state and blob replies go down the link, its
//! hello, status, logs, blob requests and application messages come up and are published on
//! its topics ([`wasmfleet_proto::link`] frames: postcard + COBS). Every decision stays on the
//! device. When the link drops (the MCU is unplugged, QEMU is killed) the bridge publishes the
//! node offline at once, so the hub marks it NotReady without waiting for a keep-alive; it
//! reconnects on its own and the node comes back with its workloads, because the bridge sends
//! the retained desired state again whenever the device says hello (also after a reset).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use wasmfleet_common::backoff::Reconnect;
use wasmfleet_proto::link::{Downlink, LinkDecoder, Uplink};
use wasmfleet_proto::topic::{self, NodeTopic, node_topic, parse_node_topic};
use wasmfleet_proto::{BlobReply, DesiredState, Heartbeat, Presence, decode, encode};

use super::mqtt::{self, LinkEvent, MqttLink};

/// Delays between attempts to open a link that is down.
const LINK_RETRY_MIN: Duration = Duration::from_millis(200);
const LINK_RETRY_MAX: Duration = Duration::from_secs(5);

/// One attached microcontroller (`--mcu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McuSpec {
    /// Its node name.
    pub name: String,
    /// How to reach it.
    pub endpoint: Endpoint,
}

/// The byte stream to a microcontroller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP server carrying its UART (an emulator's serial port, a serial-to-network bridge).
    Tcp(String),
    /// A serial device at a baud rate.
    Serial {
        /// Device path, e.g. `/dev/ttyACM0`.
        path: PathBuf,
        /// Baud rate (default 115200).
        baud: u32,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp:{addr}"),
            Endpoint::Serial { path, baud } => write!(f, "serial:{}@{baud}", path.display()),
        }
    }
}

impl FromStr for McuSpec {
    type Err = String;

    /// `NAME=tcp:HOST:PORT` or `NAME=serial:PATH[@BAUD]`.
    fn from_str(s: &str) -> Result<McuSpec, String> {
        let usage = "expected NAME=tcp:HOST:PORT or NAME=serial:PATH[@BAUD]";
        let (name, target) = s
            .split_once('=')
            .ok_or_else(|| format!("--mcu {s:?}: {usage}"))?;
        wasmfleet_proto::name::validate(name)
            .map_err(|e| format!("--mcu {s:?}: node name {name:?}: {e}"))?;
        let endpoint = if let Some(addr) = target.strip_prefix("tcp:") {
            let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) {
                return Err(format!("--mcu {s:?}: {addr:?} is not HOST:PORT"));
            }
            Endpoint::Tcp(addr.to_owned())
        } else if let Some(dev) = target.strip_prefix("serial:") {
            let (path, baud) = match dev.rsplit_once('@') {
                Some((path, baud)) => (
                    path,
                    baud.parse::<u32>()
                        .map_err(|_| format!("--mcu {s:?}: baud rate {baud:?} is not a number"))?,
                ),
                None => (dev, 115_200),
            };
            if path.is_empty() {
                return Err(format!("--mcu {s:?}: {usage}"));
            }
            Endpoint::Serial {
                path: path.into(),
                baud,
            }
        } else {
            return Err(format!("--mcu {s:?}: {usage}"));
        };
        Ok(McuSpec {
            name: name.to_owned(),
            endpoint,
        })
    }
}

/// Runs the bridge for `mcu` until `shutdown` turns true: opens the link, keeps the node's MQTT
/// session while the link is up, and starts over when either side drops.
///
/// The device's own heartbeats (`Uplink::Heartbeat`) are relayed to the node's `hb` topic, so
/// a device that freezes, or a wire cut the link cannot see, makes the node NotReady. For
/// firmware that sends none, the gateway beats every `heartbeat` while the link is up and the
/// device has said hello: a link that drops stops them (and publishes `Offline`), as does a
/// gateway that freezes.
pub async fn run(
    mcu: McuSpec,
    host: String,
    port: u16,
    heartbeat: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = Reconnect::new(LINK_RETRY_MIN, LINK_RETRY_MAX);
    let mut reported = false;
    while !*shutdown.borrow() {
        match open(&mcu.endpoint).await {
            Ok((reader, writer)) => {
                retry.reset();
                reported = false;
                tracing::info!(mcu = %mcu.name, endpoint = %mcu.endpoint, "microcontroller link up");
                let link = Endpoints { reader, writer };
                let why = bridge(&mcu.name, &host, port, heartbeat, link, &mut shutdown).await;
                tracing::warn!(mcu = %mcu.name, reason = %why, "microcontroller link down");
            }
            Err(e) => {
                // Said once per outage, not once per retry.
                if !reported {
                    tracing::warn!(mcu = %mcu.name, endpoint = %mcu.endpoint, error = %e, "cannot open the microcontroller link; retrying");
                    reported = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry.next_delay()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

async fn open(endpoint: &Endpoint) -> std::io::Result<(Reader, Writer)> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            let (r, w) = stream.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Endpoint::Serial { path, baud } => {
            let file = super::serial::open_raw(path, *baud)?;
            let r = tokio::fs::File::from_std(file.try_clone()?);
            let w = tokio::fs::File::from_std(file);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Both directions of an open device link.
struct Endpoints {
    reader: Reader,
    writer: Writer,
}

/// One connected period: relays until the link or the shutdown ends it; returns why.
async fn bridge(
    node: &str,
    host: &str,
    port: u16,
    heartbeat: Duration,
    link: Endpoints,
    shutdown: &mut watch::Receiver<bool>,
) -> String {
    let Endpoints {
        mut reader,
        mut writer,
    } = link;
    let mut beats = tokio::time::interval(heartbeat);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = encode(&Heartbeat {
        interval_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
    });
    let mut greeted = false;
    // Firmware that predates device heartbeats never sends one: the gateway beats for it
    // while the link is up.
    let mut device_beats = false;
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let session = MqttLink::start(mqtt::options(host, port, node), node, ev_tx);
    let mut decoder = LinkDecoder::new();
    let mut desired: Option<DesiredState> = None;
    let mut buf = vec![0u8; 1024];
    let why = loop {
        tokio::select! {
            _ = shutdown.changed() => break "the agent is shutting down".to_owned(),
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => break "the device closed the link".to_owned(),
                    Ok(n) => n,
                    Err(e) => break format!("read failed: {e}"),
                };
                let mut down = Vec::new();
                decoder.feed::<Uplink>(&buf[..n], |msg| match msg {
                    Ok(up) => {
                        match &up {
                            // Beat right after the announcement: the hub learns the interval now.
                            Uplink::Hello(_) => {
                                beats.reset_immediately();
                                greeted = true;
                            }
                            // The device beats itself: its beats, not the link's, say it lives.
                            Uplink::Heartbeat(_) => device_beats = true,
                            _ => {}
                        }
                        down.extend(relay_up(node, &session, up, desired.as_ref()));
                    }
                    Err(e) => tracing::warn!(mcu = %node, error = %e, "bad frame from the device"),
                });
                if let Err(e) = send(&mut writer, &down).await {
                    break format!("write failed: {e}");
                }
            }
            _ = beats.tick(), if greeted && !device_beats => {
                session.publish(node_topic(node, NodeTopic::Heartbeat), QoS::AtMostOnce, false, beat.clone());
            }
            Some(event) = ev_rx.recv() => {
                let down = match event {
                    // A new MQTT session: the device announces itself again on it.
                    LinkEvent::Connected => vec![Downlink::Sync {
                        node: node.to_owned(),
                        unix_ms: unix_ms(),
                    }],
                    LinkEvent::Message { topic, payload } => relay_down(node, &topic, &payload, &mut desired),
                    LinkEvent::Disconnected(_) | LinkEvent::Closed => vec![],
                };
                if let Err(e) = send(&mut writer, &down).await {
                    break format!("write failed: {e}");
                }
            }
        }
    };
    // Offline now, not after the broker's keep-alive: the hub sees the node NotReady at once.
    session.publish(
        node_topic(node, NodeTopic::Online),
        QoS::AtLeastOnce,
        true,
        encode(&Presence::Offline),
    );
    session.disconnect();
    let wait_closed = async {
        while let Some(ev) = ev_rx.recv().await {
            if ev == LinkEvent::Closed {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), wait_closed).await;
    why
}

/// Publishes what the device sent; returns what to send it in answer.
fn relay_up(
    node: &str,
    session: &MqttLink,
    up: Uplink,
    desired: Option<&DesiredState>,
) -> Vec<Downlink> {
    let topic = |kind| node_topic(node, kind);
    match up {
        Uplink::Hello(hello) => {
            tracing::info!(mcu = %node, version = %hello.agent_version, "microcontroller says hello");
            session.publish(
                topic(NodeTopic::Online),
                QoS::AtLeastOnce,
                true,
                encode(&Presence::Online(hello)),
            );
            // A device that says hello may just have reset: give it its workloads back.
            desired
                .cloned()
                .map(Downlink::Desired)
                .into_iter()
                .collect()
        }
        Uplink::Status(status) => {
            session.publish(
                topic(NodeTopic::Status),
                QoS::AtLeastOnce,
                true,
                encode(&status),
            );
            vec![]
        }
        Uplink::Logs(batch) => {
            session.publish(
                topic(NodeTopic::Logs),
                QoS::AtMostOnce,
                false,
                encode(&batch),
            );
            vec![]
        }
        Uplink::BlobRequest(req) => {
            session.publish(
                topic(NodeTopic::BlobRequest),
                QoS::AtLeastOnce,
                false,
                encode(&req),
            );
            vec![]
        }
        Uplink::AppPublish { topic, payload } => {
            // The device checked the module's grant; the gateway still keeps it to app topics.
            if is_app(&topic, topic::check_app_topic) {
                session.publish(topic, QoS::AtLeastOnce, false, payload);
            } else {
                tracing::warn!(mcu = %node, %topic, "device published outside the application topics; dropped");
            }
            vec![]
        }
        Uplink::Heartbeat(beat) => {
            session.publish(
                topic(NodeTopic::Heartbeat),
                QoS::AtMostOnce,
                false,
                encode(&beat),
            );
            vec![]
        }
        Uplink::AppFilters(filters) => {
            let (ok, bad): (Vec<String>, Vec<String>) = filters
                .into_iter()
                .partition(|f| is_app(f, topic::check_app_filter));
            if !bad.is_empty() {
                tracing::warn!(mcu = %node, filters = ?bad, "device asked for filters outside the application topics");
            }
            session.set_app_filters(node, &ok);
            vec![]
        }
    }
}

/// Whether `full` is `wf/v1/app/{namespace}/{relative}` with a `relative` part `check` accepts.
fn is_app(full: &str, check: fn(&str) -> Result<(), topic::AppTopicError>) -> bool {
    topic::parse_app_topic(full).is_some_and(|(_, relative)| check(relative).is_ok())
}

/// Turns a message on one of the node's subscriptions into what the device gets.
fn relay_down(
    node: &str,
    topic: &str,
    payload: &[u8],
    desired: &mut Option<DesiredState>,
) -> Vec<Downlink> {
    match parse_node_topic(topic) {
        Some((n, NodeTopic::Desired)) if n == node => match decode::<DesiredState>(payload) {
            Ok(d) => {
                *desired = Some(d.clone());
                vec![Downlink::Desired(d)]
            }
            Err(e) => {
                tracing::warn!(mcu = %node, error = %e, "undecodable desired state from the hub");
                vec![]
            }
        },
        Some((n, NodeTopic::Blob)) if n == node => match decode::<BlobReply>(payload) {
            Ok(reply) => vec![Downlink::Blob(reply)],
            Err(e) => {
                tracing::warn!(mcu = %node, error = %e, "undecodable blob reply from the hub");
                vec![]
            }
        },
        Some(_) => vec![],
        None => vec![Downlink::AppMessage {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
        }],
    }
}

async fn send(writer: &mut Writer, msgs: &[Downlink]) -> std::io::Result<()> {
    for m in msgs {
        writer.write_all(&wasmfleet_proto::link::encode(m)).await?;
    }
    writer.flush().await
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_serial_endpoints_and_names_what_is_wrong() {
        assert_eq!(
            "mcu-1=tcp:127.0.0.1:4000".parse::<McuSpec>().unwrap(),
            McuSpec {
                name: "mcu-1".into(),
                endpoint: Endpoint::Tcp("127.0.0.1:4000".into())
            }
        );
        assert_eq!(
            "m=serial:/dev/ttyACM0@921600"
                .parse::<McuSpec>()
                .unwrap()
                .endpoint,
            Endpoint::Serial {
                path: "/dev/ttyACM0".into(),
                baud: 921_600
            }
        );
        assert_eq!(
            "m=serial:/dev/ttyUSB0".parse::<McuSpec>().unwrap().endpoint,
            Endpoint::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 115_200
            }
        );
        for (bad, says) in [
            ("mcu-1", "expected NAME="),
            ("Bad_Name=tcp:h:1", "node name"),
            ("m=tcp:localhost", "not HOST:PORT"),
            ("m=tcp:h:0", "not HOST:PORT"),
            ("m=serial:/dev/x@fast", "baud rate"),
            ("m=usb:/dev/x", "expected NAME="),
        ] {
            let err = bad.parse::<McuSpec>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn desired_states_are_kept_for_a_device_that_resets() {
        let mut desired = None;
        let d = DesiredState {
            fleet: 1,
            generation: 4,
            workloads: vec![],
        };
        let down = relay_down("m", "wf/v1/n/m/desired", &encode(&d), &mut desired);
        assert_eq!(down, vec![Downlink::Desired(d.clone())]);
        assert_eq!(desired, Some(d));
        assert!(relay_down("m", "wf/v1/n/m/desired", b"junk", &mut desired).is_empty());
        assert!(relay_down("m", "wf/v1/n/other/blob", b"", &mut desired).is_empty());
        let app = relay_down("m", "wf/v1/app/default/t", b"hi", &mut desired);
        assert!(
            matches!(&app[..], [Downlink::AppMessage { topic, .. }] if topic == "wf/v1/app/default/t")
        );
    }

    #[test]
    fn only_application_topics_pass_upward() {
        assert!(is_app(
            "wf/v1/app/default/sensors/t",
            topic::check_app_topic
        ));
        assert!(!is_app("wf/v1/n/other/desired", topic::check_app_topic));
        assert!(!is_app("wf/v1/app/default/a/#", topic::check_app_topic));
        assert!(is_app("wf/v1/app/default/a/#", topic::check_app_filter));
        assert!(!is_app("#", topic::check_app_filter));
    }
}
