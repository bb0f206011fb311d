//! MQTT topic names. Every topic lives under [`PREFIX`]; per-node topics embed the node name,
//! which [`crate::name::validate`] keeps free of MQTT wildcards and separators.

use alloc::format;
use alloc::string::String;

/// Root of every Wasmfleet topic; the `v1` moves with incompatible topic-layout changes.
pub const PREFIX: &str = "wf/v1";

/// The hub's subscription to every node's presence.
pub const ALL_ONLINE: &str = "wf/v1/n/+/online";
/// The hub's subscription to every node's status.
pub const ALL_STATUS: &str = "wf/v1/n/+/status";
/// The hub's subscription to every node's logs.
pub const ALL_LOGS: &str = "wf/v1/n/+/logs";
/// The hub's subscription to every node's blob chunk requests.
pub const ALL_BLOB_REQUESTS: &str = "wf/v1/n/+/blob-req";

/// The per-node topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTopic {
    /// [`crate::DesiredState`], hub → node, retained.
    Desired,
    /// [`crate::NodeStatus`], node → hub, retained.
    Status,
    /// [`crate::Presence`], node → hub, retained, Last Will.
    Online,
    /// [`crate::LogBatch`], node → hub.
    Logs,
    /// [`crate::BlobReply`], hub → node.
    Blob,
    /// [`crate::BlobRequest`], node → hub.
    BlobRequest,
}

impl NodeTopic {
    /// Last topic segment.
    pub const fn suffix(self) -> &'static str {
        match self {
            NodeTopic::Desired => "desired",
            NodeTopic::Status => "status",
            NodeTopic::Online => "online",
            NodeTopic::Logs => "logs",
            NodeTopic::Blob => "blob",
            NodeTopic::BlobRequest => "blob-req",
        }
    }

    fn from_suffix(s: &str) -> Option<Self> {
        Some(match s {
            "desired" => NodeTopic::Desired,
            "status" => NodeTopic::Status,
            "online" => NodeTopic::Online,
            "logs" => NodeTopic::Logs,
            "blob" => NodeTopic::Blob,
            "blob-req" => NodeTopic::BlobRequest,
            _ => return None,
        })
    }
}

/// The full topic name of `kind` for `node`, e.g. `wf/v1/n/gw-1/desired`.
pub fn node_topic(node: &str, kind: NodeTopic) -> String {
    format!("{PREFIX}/n/{node}/{}", kind.suffix())
}

/// Splits a per-node topic into node name and kind; `None` for anything else.
pub fn parse_node_topic(topic: &str) -> Option<(&str, NodeTopic)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/n/")?;
    let (node, suffix) = rest.split_once('/')?;
    if node.is_empty() || suffix.contains('/') {
        return None;
    }
    Some((node, NodeTopic::from_suffix(suffix)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_topics_round_trip() {
        for kind in [
            NodeTopic::Desired,
            NodeTopic::Status,
            NodeTopic::Online,
            NodeTopic::Logs,
            NodeTopic::Blob,
            NodeTopic::BlobRequest,
        ] {
            let t = node_topic("gw-1", kind);
            assert_eq!(parse_node_topic(&t), Some(("gw-1", kind)));
        }
        assert_eq!(
            node_topic("gw-1", NodeTopic::Desired),
            "wf/v1/n/gw-1/desired"
        );
    }

    #[test]
    fn rejects_foreign_topics() {
        for t in [
            "wf/v1/blob/req",
            "wf/v1/n/+/blob-req/x",
            "wf/v2/n/a/status",
            "wf/v1/n//status",
            "wf/v1/n/a/b/status",
            "wf/v1/n/a/nope",
        ] {
            assert_eq!(parse_node_topic(t), None, "{t}");
        }
    }
}
