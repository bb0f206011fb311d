//! Command-line options and their validation into a [`Config`].
//!
//! Parsing lives here rather than in `main.rs` so that tests (and embedders) build a `Config`
//! the same way the binary does, and every error names the offending value.

use std::path::PathBuf;

use clap::Parser;
use wasmfleet_proto::{Label, NameError};

/// `edge-agent` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Wasmfleet agent: runs the hub's WebAssembly workloads on this node"
)]
pub struct Cli {
    /// MQTT broker URL, `mqtt://host:port` (port defaults to 1883).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt: String,
    /// Node name (lowercase letters, digits, '-' and '.'); also the MQTT client id.
    #[arg(long)]
    pub node: String,
    /// Directory for the persisted desired state, module blobs and compiled-code cache.
    #[arg(long)]
    pub data: PathBuf,
    /// Label announced to the scheduler, `key=value`; repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Memory offered to workloads, e.g. `512Mi`, `1Gi` (default: half of MemTotal).
    #[arg(long)]
    pub memory: Option<String>,
    /// Most workload instances this node accepts.
    #[arg(long, default_value_t = 32)]
    pub max_workloads: u32,
}

/// Validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Broker host name or address.
    pub mqtt_host: String,
    /// Broker TCP port.
    pub mqtt_port: u16,
    /// Node name, valid per [`wasmfleet_proto::name::validate`].
    pub node: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Labels, sorted by key.
    pub labels: Vec<Label>,
    /// Memory capacity announced to the hub, in bytes.
    pub memory_bytes: u64,
    /// Instance limit announced to the hub.
    pub max_workloads: u32,
}

/// Why the command line is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--node` is not a valid name.
    #[error("invalid --node {node:?}: {reason}")]
    Node {
        /// The given name.
        node: String,
        /// Why it is invalid.
        reason: NameError,
    },
    /// A `--label` is not `key=value` with a non-empty key.
    #[error("invalid --label {0:?}: expected key=value with a non-empty key")]
    Label(String),
    /// `--memory` is not a size.
    #[error(
        "invalid --memory {0:?}: expected a byte count with an optional Ki/Mi/Gi suffix, e.g. 512Mi"
    )]
    Memory(String),
    /// `--mqtt` is not an `mqtt://host[:port]` URL.
    #[error("invalid --mqtt {0:?}: expected mqtt://host[:port]")]
    MqttUrl(String),
    /// No `--memory` and `/proc/meminfo` could not be read.
    #[error("cannot read MemTotal from /proc/meminfo ({0}); pass --memory")]
    MemInfo(String),
}

impl Cli {
    /// Validates the options into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        wasmfleet_proto::name::validate(&self.node).map_err(|reason| ConfigError::Node {
            node: self.node.clone(),
            reason,
        })?;
        let (mqtt_host, mqtt_port) = parse_mqtt_url(&self.mqtt)?;
        let mut labels = self
            .labels
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<Vec<_>, _>>()?;
        labels.sort();
        let memory_bytes = match &self.memory {
            Some(m) => parse_memory(m)?,
            None => default_memory()?,
        };
        Ok(Config {
            mqtt_host,
            mqtt_port,
            node: self.node,
            data_dir: self.data,
            labels,
            memory_bytes,
            max_workloads: self.max_workloads,
        })
    }
}

/// Parses `key=value`.
pub fn parse_label(s: &str) -> Result<Label, ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok(Label {
            key: k.to_string(),
            value: v.to_string(),
        }),
        _ => Err(ConfigError::Label(s.to_string())),
    }
}

/// Parses a byte count with an optional binary suffix: `1048576`, `64Ki`, `512Mi`, `1Gi`.
pub fn parse_memory(s: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Memory(s.to_string());
    let (num, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30)]
        .iter()
        .find_map(|(suffix, shift)| s.strip_suffix(suffix).map(|n| (n, *shift)))
        .unwrap_or((s, 0));
    let n: u64 = num.parse().map_err(|_| err())?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(err)
}

/// Splits `mqtt://host[:port]` (or a bare `host[:port]`).
pub fn parse_mqtt_url(s: &str) -> Result<(String, u16), ConfigError> {
    let err = || ConfigError::MqttUrl(s.to_string());
    let rest = s
        .strip_prefix("mqtt://")
        .or_else(|| s.strip_prefix("tcp://"))
        .unwrap_or(s);
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err())?),
        None => (rest, 1883),
    };
    if host.is_empty() || host.contains('/') {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

/// Half of the machine's memory: leaves room for the OS and the agent itself.
fn default_memory() -> Result<u64, ConfigError> {
    let info = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| ConfigError::MemInfo(e.to_string()))?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| ConfigError::MemInfo("no MemTotal line".into()))?;
    Ok(kib * 1024 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_memory("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_memory("64Ki").unwrap(), 64 << 10);
        assert_eq!(parse_memory("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1000").unwrap(), 1000);
        for bad in ["", "1G", "Mi", "-1Mi", "0", "99999999999Gi"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("zone=a").unwrap(),
            Label {
                key: "zone".into(),
                value: "a".into()
            }
        );
        assert_eq!(parse_label("k=").unwrap().value, "");
        let err = parse_label("novalue").unwrap_err().to_string();
        assert!(err.contains("\"novalue\""), "{err}");
        assert!(parse_label("=v").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://broker").unwrap(),
            ("broker".into(), 1883)
        );
        assert!(parse_mqtt_url("mqtt://:1").is_err());
        assert!(parse_mqtt_url("mqtt://h:x").is_err());
    }

    #[test]
    fn cli_validates_node_and_sorts_labels() {
        let cli = |node: &str| Cli {
            mqtt: "mqtt://h".into(),
            node: node.into(),
            data: "/tmp/x".into(),
            labels: vec!["z=1".into(), "a=2".into()],
            memory: Some("1Gi".into()),
            max_workloads: 4,
        };
        let cfg = cli("gw-1").into_config().unwrap();
        assert_eq!(cfg.labels[0].key, "a");
        assert!(matches!(
            cli("Bad/Name").into_config(),
            Err(ConfigError::Node { .. })
        ));
        assert!(default_memory().unwrap() > 0);
    }
}
