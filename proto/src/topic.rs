//! MQTT topic names. Every topic lives under [`PREFIX`]; per-node topics embed the node name,
//! which [`crate::name::validate`] keeps free of MQTT wildcards and separators; fleet-wide
//! blob topics ([`blob_topic`]) embed a module's digest and a chunk number.

use alloc::format;
use alloc::string::String;

use crate::{Digest, MAX_BLOB_CHUNK};

/// Root of every Wasmfleet topic; the `v1` moves with incompatible topic-layout changes.
pub const PREFIX: &str = "wf/v1";

/// The hub's subscription to every node's presence.
pub const ALL_ONLINE: &str = "wf/v1/n/+/online";
/// The hub's subscription to every node's status.
pub const ALL_STATUS: &str = "wf/v1/n/+/status";
/// The hub's subscription to every node's logs.
pub const ALL_LOGS: &str = "wf/v1/n/+/logs";
/// The hub's subscription to every node's blob chunk requests answered on the node's own
/// `blob` topic.
pub const ALL_BLOB_REQUESTS: &str = "wf/v1/n/+/blob-req";
/// The hub's subscription to every node's blob chunk requests answered on the chunk's
/// fleet-wide topic ([`blob_topic`]).
pub const ALL_BLOB_WANTS: &str = "wf/v1/n/+/blob-want";
/// The hub's subscription to every node's heartbeats.
pub const ALL_HEARTBEATS: &str = "wf/v1/n/+/hb";

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
    /// [`crate::BlobReply`], hub → node: the answers to this node's [`NodeTopic::BlobRequest`]s.
    Blob,
    /// [`crate::BlobRequest`], node → hub, QoS 1: answered on the node's [`NodeTopic::Blob`].
    /// Microcontrollers (through their gateway) and agents older than fan-out ask here.
    BlobRequest,
    /// [`crate::BlobRequest`], node → hub, QoS 1: answered once for every node that wants the
    /// same chunk, on the chunk's fleet-wide topic ([`blob_topic`]), which the node subscribes
    /// to before it asks. Hubs older than fan-out do not subscribe to it (and would not parse
    /// it): a node that hears nothing on blob topics falls back to [`NodeTopic::BlobRequest`].
    BlobWant,
    /// [`crate::Heartbeat`], node → hub, QoS 0, not retained.
    Heartbeat,
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
            NodeTopic::BlobWant => "blob-want",
            NodeTopic::Heartbeat => "hb",
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
            "blob-want" => NodeTopic::BlobWant,
            "hb" => NodeTopic::Heartbeat,
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

/// Root of the fleet-wide blob topics: `wf/v1/blob/{digest}/{chunk}`, one per chunk of a blob.
pub const BLOB_PREFIX: &str = "wf/v1/blob";

/// The chunk (a [`MAX_BLOB_CHUNK`]-aligned cell of a blob, counted from 0) that byte `offset`
/// lies in.
pub const fn blob_chunk(offset: u64) -> u64 {
    offset / MAX_BLOB_CHUNK as u64
}

/// The fleet-wide topic of chunk `chunk` of blob `digest`,
/// `wf/v1/blob/{64 lowercase hex digits}/{chunk}`: hub → nodes, QoS 1, never retained. The hub
/// publishes each [`crate::BlobReply`] for a range asked on [`NodeTopic::BlobWant`] once, on the
/// topic of the chunk the range starts in, and the broker fans it out to every node subscribed
/// there. A node subscribes to the chunks it still needs (a few ahead of what it wrote) before
/// it asks for them, and unsubscribes as they arrive: it receives the chunks it lacks, not
/// every re-publication a later asker causes. Only the hub may publish here (broker ACLs: nodes
/// read `wf/v1/blob/#`, write nothing there): a node takes any chunk it still needs from these
/// topics, and only the blob's SHA-256, checked when it is whole, vouches for it.
pub fn blob_topic(digest: &Digest, chunk: u64) -> String {
    format!("{BLOB_PREFIX}/{digest}/{chunk}")
}

/// The blob and chunk a fleet-wide blob topic names; `None` for any other topic, including
/// one not in canonical form (64 lowercase hex digits, a decimal chunk without leading
/// zeros), so one chunk has one topic.
pub fn parse_blob_topic(topic: &str) -> Option<(Digest, u64)> {
    let rest = topic.strip_prefix(BLOB_PREFIX)?.strip_prefix('/')?;
    let (hex, chunk) = rest.split_once('/')?;
    let hex_ok = hex.len() == Digest::HEX_LEN
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let chunk_ok = !chunk.is_empty()
        && chunk.bytes().all(|b| b.is_ascii_digit())
        && (chunk == "0" || !chunk.starts_with('0'));
    if !hex_ok || !chunk_ok {
        return None;
    }
    Some((hex.parse().ok()?, chunk.parse().ok()?))
}

/// Root of application topics: a module's relative topic `t` in namespace `ns` is
/// `wf/v1/app/{ns}/{t}` on the broker.
pub const APP_PREFIX: &str = "wf/v1/app";

/// Longest application topic or filter a module may use, relative to its namespace.
pub const MAX_APP_TOPIC: usize = 256;

/// Why a module's topic or filter is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppTopicError {
    /// Empty, too long, an empty level, or a `$`/NUL character.
    Malformed,
    /// A wildcard where a topic name is needed, or `#` not as the last level.
    Wildcard,
}

/// Checks a relative application topic name (publishable: no wildcards).
pub fn check_app_topic(topic: &str) -> Result<(), AppTopicError> {
    check_levels(topic)?;
    match topic.split('/').any(|l| l == "+" || l == "#") {
        true => Err(AppTopicError::Wildcard),
        false => Ok(()),
    }
}

/// Checks a relative application topic filter (`+` for one level, `#` last for the rest).
pub fn check_app_filter(filter: &str) -> Result<(), AppTopicError> {
    check_levels(filter)?;
    let levels: alloc::vec::Vec<&str> = filter.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if (l.contains('+') && *l != "+")
            || (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
        {
            return Err(AppTopicError::Wildcard);
        }
    }
    Ok(())
}

fn check_levels(s: &str) -> Result<(), AppTopicError> {
    let bad = s.is_empty()
        || s.len() > MAX_APP_TOPIC
        || s.contains(['\0', '$'])
        || s.split('/').any(str::is_empty);
    match bad {
        true => Err(AppTopicError::Malformed),
        false => Ok(()),
    }
}

/// The broker topic (or filter) of a module's relative topic in `namespace`.
pub fn app_topic(namespace: &str, relative: &str) -> String {
    format!("{APP_PREFIX}/{namespace}/{relative}")
}

/// Splits a broker topic under [`APP_PREFIX`] into namespace and relative topic.
pub fn parse_app_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(APP_PREFIX)?.strip_prefix('/')?;
    let (ns, relative) = rest.split_once('/')?;
    (!ns.is_empty() && !relative.is_empty()).then_some((ns, relative))
}

/// Whether topic name `topic` matches filter `filter` (MQTT 3.1.1 §4.7 rules).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `inner` matches is also matched by `outer`: a module may subscribe to
/// `inner` only if a granted filter `outer` covers it.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            // `+` covers any single level, including `+`, but not `#` (many levels).
            (Some("+"), Some(l)) if l != "#" => {}
            (Some(a), Some(b)) if a == b && a != "+" && a != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_filters_match_and_cover() {
        assert!(filter_matches("sensors/+/temp", "sensors/n1/temp"));
        assert!(!filter_matches("sensors/+/temp", "sensors/n1/hum"));
        assert!(!filter_matches("sensors/+/temp", "sensors/n1/temp/x"));
        assert!(filter_matches("sensors/#", "sensors/n1/temp"));
        assert!(filter_matches("sensors/#", "sensors"));
        assert!(filter_matches("a/b", "a/b"));
        assert!(filter_covers("sensors/#", "sensors/+/temp"));
        assert!(filter_covers("sensors/+/temp", "sensors/n1/temp"));
        assert!(filter_covers("sensors/+/temp", "sensors/+/temp"));
        assert!(!filter_covers("sensors/+/temp", "sensors/#"));
        assert!(!filter_covers("sensors/n1/temp", "sensors/+/temp"));
        assert!(!filter_covers("sensors/+/temp", "sensors/+/temp/x"));
        assert!(!filter_covers("sensors", "sensors/#"));
    }

    #[test]
    fn app_topics_are_checked_and_namespaced() {
        assert_eq!(check_app_topic("sensors/n1/temp"), Ok(()));
        assert_eq!(
            check_app_topic("sensors/+/temp"),
            Err(AppTopicError::Wildcard)
        );
        assert_eq!(
            check_app_topic("sensors//temp"),
            Err(AppTopicError::Malformed)
        );
        assert_eq!(check_app_topic("$SYS/x"), Err(AppTopicError::Malformed));
        assert_eq!(check_app_topic(""), Err(AppTopicError::Malformed));
        assert_eq!(check_app_filter("sensors/#"), Ok(()));
        assert_eq!(
            check_app_filter("sensors/#/x"),
            Err(AppTopicError::Wildcard)
        );
        assert_eq!(check_app_filter("sensors/a+"), Err(AppTopicError::Wildcard));
        let t = app_topic("default", "sensors/n1/temp");
        assert_eq!(t, "wf/v1/app/default/sensors/n1/temp");
        assert_eq!(parse_app_topic(&t), Some(("default", "sensors/n1/temp")));
        assert_eq!(parse_app_topic("wf/v1/n/a/status"), None);
    }

    #[test]
    fn node_topics_round_trip() {
        for kind in [
            NodeTopic::Desired,
            NodeTopic::Status,
            NodeTopic::Online,
            NodeTopic::Logs,
            NodeTopic::Blob,
            NodeTopic::BlobRequest,
            NodeTopic::BlobWant,
            NodeTopic::Heartbeat,
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
    fn blob_topics_round_trip_and_name_one_chunk_once() {
        let d = Digest([0xab; 32]);
        let t = blob_topic(&d, 12);
        assert_eq!(t, alloc::format!("wf/v1/blob/{}/12", "ab".repeat(32)));
        assert_eq!(parse_blob_topic(&t), Some((d, 12)));
        assert_eq!(parse_blob_topic(&blob_topic(&d, 0)), Some((d, 0)));
        assert_eq!(
            parse_blob_topic(&blob_topic(&d, u64::MAX)),
            Some((d, u64::MAX))
        );
        let c = MAX_BLOB_CHUNK as u64;
        assert_eq!((blob_chunk(0), blob_chunk(c - 1), blob_chunk(c)), (0, 0, 1));
        assert_eq!(
            node_topic("gw-1", NodeTopic::BlobWant),
            "wf/v1/n/gw-1/blob-want"
        );
        assert!(filter_matches("wf/v1/blob/+/+", &t));
        // The hub's filters never match a blob topic, nor do a node's own.
        assert!(!filter_matches(ALL_BLOB_WANTS, &t));
        assert_eq!(parse_node_topic(&t), None);
        let hex = "ab".repeat(32);
        for bad in [
            alloc::format!("wf/v1/blob/{}/1", "AB".repeat(32)),
            alloc::format!("wf/v1/blob/sha256:{hex}/1"),
            alloc::format!("wf/v1/blob/{}/1", "ab".repeat(31)),
            alloc::format!("wf/v1/blob/{}ag/1", "ab".repeat(31)),
            alloc::format!("wf/v1/blob/{hex}"),
            alloc::format!("wf/v1/blob/{hex}/"),
            alloc::format!("wf/v1/blob/{hex}/01"),
            alloc::format!("wf/v1/blob/{hex}/+1"),
            alloc::format!("wf/v1/blob/{hex}/1/x"),
            alloc::format!("wf/v1/blob/{hex}/18446744073709551616"),
            "wf/v1/blob/".into(),
            "wf/v1/blob".into(),
            alloc::format!("wf/v2/blob/{hex}/1"),
        ] {
            assert_eq!(parse_blob_topic(&bad), None, "{bad}");
        }
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
