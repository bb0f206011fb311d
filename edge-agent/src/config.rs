//! Command-line options and their validation into a [`Config`].
//!
//! Parsing lives here rather than in `main.rs` so that tests (and embedders) build a `Config`
//! the same way the binary does, and every error names the offending value.

use std::path::PathBuf;

use clap::Parser;
use wasmfleet_common::BrokerUrl;
use wasmfleet_common::broker_url::BrokerUrlError;
use wasmfleet_common::quantity::parse_bytes;
use wasmfleet_proto::{Label, NameError};

use crate::logbudget;

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
    /// Memory offered to workloads, e.g. `512Mi`, `1Gi`, `2G` (default: half of MemTotal).
    #[arg(long)]
    pub memory: Option<String>,
    /// Most workload instances this node accepts.
    #[arg(long, default_value_t = 32)]
    pub max_workloads: u32,
    /// Log lines per second one workload may ship; more are dropped and counted.
    #[arg(long, default_value_t = logbudget::Limits::default().lines_per_sec)]
    pub log_lines_per_sec: u32,
    /// Log bytes per second one workload may ship, e.g. `64Ki`.
    #[arg(long, default_value = "64Ki")]
    pub log_bytes_per_sec: String,
    /// Hardware offered to modules: `none`; `sim` (a simulated BME280 on `i2c-1`, an LED on
    /// GPIO 17, a button on GPIO 27, a loopback `spidev0.0`); or `linux` (this machine's I2C
    /// buses, SPI devices and the GPIO lines of `--gpio-lines`).
    #[arg(long, default_value = "none")]
    pub devices: String,
    /// With `--devices linux`: an I2C bus as `NAME=PATH` (e.g. `i2c-1=/dev/i2c-1`); repeatable.
    /// Default: every `/dev/i2c-*`, named after the file.
    #[arg(long = "i2c")]
    pub i2c: Vec<String>,
    /// With `--devices linux`: an SPI device as `NAME=PATH`; repeatable. Default: every
    /// `/dev/spidev*`.
    #[arg(long = "spi")]
    pub spi: Vec<String>,
    /// With `--devices linux`: the GPIO character device.
    #[arg(long, default_value = "/dev/gpiochip0")]
    pub gpio_chip: PathBuf,
    /// With `--devices linux`: GPIO lines offered to modules, e.g. `17,27` (none by default:
    /// driving a line wired to something else can damage it).
    #[arg(long, value_delimiter = ',')]
    pub gpio_lines: Vec<u32>,
    /// A microcontroller attached to this gateway, shown to the hub as node NAME:
    /// `NAME=tcp:HOST:PORT` (e.g. an emulator's UART) or `NAME=serial:PATH[@BAUD]` (default
    /// 115200 baud); repeatable.
    #[arg(long = "mcu")]
    pub mcus: Vec<String>,
    /// How often the node tells the hub it is alive, e.g. `5s` (1s to 20s). The hub declares it
    /// NotReady after three missed heartbeats, even when its connection looks open.
    #[arg(long, default_value = "5s")]
    pub heartbeat: String,
}

/// Shortest `--heartbeat`.
pub const MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest `--heartbeat`. A hub that restarts hears a node's interval only with its next
/// beat and assumes 5 s until then; at most 20 s keeps such a node from looking NotReady for
/// longer than a few seconds, far within the 60 s grace before its workloads move.
pub const MAX_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(20);

/// Validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The broker.
    pub broker: BrokerUrl,
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
    /// Output budget of each workload instance.
    pub log_limits: logbudget::Limits,
    /// Which hardware the node offers to modules.
    pub devices: DeviceSet,
    /// Microcontrollers this agent is the gateway of.
    pub mcus: Vec<crate::link::mcu::McuSpec>,
    /// Interval of heartbeats (this node's and its microcontrollers').
    pub heartbeat: std::time::Duration,
}

/// The hardware a node offers (`--devices`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceSet {
    /// None: modules that need devices are not placed here.
    #[default]
    None,
    /// The simulated set ([`crate::devices::sim`]).
    Sim,
    /// This machine's hardware ([`crate::devices::linux`]).
    Linux(crate::devices::linux::LinuxOptions),
}

impl DeviceSet {
    /// Opens the devices; an error names the one that could not be opened.
    pub fn build(&self) -> Result<crate::devices::Devices, String> {
        match self {
            DeviceSet::None => Ok(crate::devices::Devices::none()),
            DeviceSet::Sim => Ok(crate::devices::sim::devices()),
            DeviceSet::Linux(opts) => crate::devices::linux::devices(opts),
        }
    }
}

/// Parses `NAME=PATH` of `--{flag}`.
fn parse_device(flag: &'static str, text: &str) -> Result<(String, PathBuf), ConfigError> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(ConfigError::Device {
            flag,
            value: text.to_string(),
        }),
    }
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
    /// A size flag is not a quantity, or is zero.
    #[error("invalid --{flag}: {reason}")]
    Size {
        /// The flag without dashes.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// `--mqtt` is not an `mqtt://host[:port]` URL.
    #[error("invalid --mqtt: {0}")]
    MqttUrl(#[from] BrokerUrlError),
    /// A rate of zero.
    #[error("invalid --log-lines-per-sec: must be at least 1")]
    LogLines,
    /// `--devices` names no known set.
    #[error("invalid --devices {0:?}: expected `none`, `sim` or `linux`")]
    Devices(String),
    /// A `--i2c`/`--spi` that is not `NAME=PATH`.
    #[error("invalid --{flag} {value:?}: expected NAME=PATH, e.g. i2c-1=/dev/i2c-1")]
    Device {
        /// The flag without dashes.
        flag: &'static str,
        /// The given value.
        value: String,
    },
    /// A `--mcu` that does not parse, or names a node twice.
    #[error("invalid {0}")]
    Mcu(String),
    /// A `--heartbeat` that is not a duration from 1s to 20s.
    #[error("invalid --heartbeat {0:?}: expected a duration from 1s to 20s, e.g. 5s")]
    Heartbeat(String),
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
        let broker: BrokerUrl = self.mqtt.parse()?;
        let mut labels = self
            .labels
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<Vec<_>, _>>()?;
        labels.sort();
        let memory_bytes = match &self.memory {
            Some(m) => parse_size("memory", m)?,
            None => default_memory()?,
        };
        if self.log_lines_per_sec == 0 {
            return Err(ConfigError::LogLines);
        }
        let log_bytes = parse_size("log-bytes-per-sec", &self.log_bytes_per_sec)?;
        let devices = match self.devices.as_str() {
            "none" => DeviceSet::None,
            "sim" => DeviceSet::Sim,
            "linux" => DeviceSet::Linux(crate::devices::linux::LinuxOptions {
                i2c: self
                    .i2c
                    .iter()
                    .map(|t| parse_device("i2c", t))
                    .collect::<Result<_, _>>()?,
                spi: self
                    .spi
                    .iter()
                    .map(|t| parse_device("spi", t))
                    .collect::<Result<_, _>>()?,
                gpio_chip: self.gpio_chip.clone(),
                gpio_lines: self.gpio_lines.clone(),
            }),
            other => return Err(ConfigError::Devices(other.to_string())),
        };
        let mut mcus: Vec<crate::link::mcu::McuSpec> = self
            .mcus
            .iter()
            .map(|m| m.parse().map_err(ConfigError::Mcu))
            .collect::<Result<_, _>>()?;
        mcus.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = mcus.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(ConfigError::Mcu(format!(
                "--mcu names {:?} twice",
                w[0].name
            )));
        }
        if mcus.iter().any(|m| m.name == self.node) {
            return Err(ConfigError::Mcu(format!(
                "--mcu {:?} has the gateway's own node name",
                self.node
            )));
        }
        let heartbeat = wasmfleet_common::quantity::parse_duration(&self.heartbeat)
            .ok()
            .filter(|d| (MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(d))
            .ok_or_else(|| ConfigError::Heartbeat(self.heartbeat.clone()))?;
        Ok(Config {
            broker,
            node: self.node,
            data_dir: self.data,
            labels,
            memory_bytes,
            max_workloads: self.max_workloads,
            log_limits: logbudget::Limits {
                lines_per_sec: self.log_lines_per_sec,
                bytes_per_sec: u32::try_from(log_bytes).unwrap_or(u32::MAX),
                ..logbudget::Limits::default()
            },
            devices,
            mcus,
            heartbeat,
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

/// Parses a positive byte quantity given to `--{flag}` (the manifests' grammar: `64Ki`, `1G`).
pub fn parse_size(flag: &'static str, text: &str) -> Result<u64, ConfigError> {
    let fail = |reason: String| ConfigError::Size { flag, reason };
    match parse_bytes(text) {
        Ok(0) => Err(fail(format!("{text:?} is zero"))),
        Ok(n) => Ok(n),
        Err(e) => Err(fail(e.to_string())),
    }
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
    fn sizes_use_the_manifest_grammar() {
        assert_eq!(parse_size("memory", "1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_size("memory", "1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("memory", "64Ki").unwrap(), 64 << 10);
        assert_eq!(parse_size("memory", "1000").unwrap(), 1000);
        for bad in ["", "1GB", "Mi", "-1Mi", "0", "99999999999Ti"] {
            let err = parse_size("memory", bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid --memory: "), "{bad}: {err}");
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
    fn cli_validates_node_and_sorts_labels() {
        let cli = |node: &str| Cli {
            mqtt: "mqtt://h".into(),
            node: node.into(),
            data: "/tmp/x".into(),
            labels: vec!["z=1".into(), "a=2".into()],
            memory: Some("1Gi".into()),
            max_workloads: 4,
            log_lines_per_sec: 100,
            log_bytes_per_sec: "64Ki".into(),
            devices: "sim".into(),
            i2c: vec![],
            spi: vec![],
            gpio_chip: "/dev/gpiochip0".into(),
            gpio_lines: vec![],
            mcus: vec![],
            heartbeat: "5s".into(),
        };
        let cfg = cli("gw-1").into_config().unwrap();
        assert_eq!(cfg.heartbeat, std::time::Duration::from_secs(5));
        for bad in ["0s", "500ms", "21s", "soon"] {
            let err = Cli {
                heartbeat: bad.into(),
                ..cli("gw-1")
            }
            .into_config()
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("invalid --heartbeat"), "{bad}: {err}");
        }
        assert_eq!(cfg.labels[0].key, "a");
        assert!(matches!(
            cli("Bad/Name").into_config(),
            Err(ConfigError::Node { .. })
        ));
        assert!(default_memory().unwrap() > 0);
        assert_eq!(cfg.broker.host, "h");
        assert_eq!(cfg.log_limits.bytes_per_sec, 64 << 10);
        assert_eq!(cfg.devices, DeviceSet::Sim);
        let mut bad = cli("gw-1");
        bad.devices = "gpio".into();
        let err = bad.into_config().unwrap_err().to_string();
        assert!(err.contains("--devices \"gpio\""), "{err}");
        let mut linux = cli("gw-1");
        linux.devices = "linux".into();
        linux.i2c = vec!["i2c-1=/dev/i2c-1".into()];
        linux.gpio_lines = vec![17, 27];
        match linux.clone().into_config().unwrap().devices {
            DeviceSet::Linux(o) => {
                assert_eq!(o.i2c, [("i2c-1".to_string(), PathBuf::from("/dev/i2c-1"))]);
                assert_eq!(o.gpio_lines, [17, 27]);
            }
            other => panic!("{other:?}"),
        }
        linux.spi = vec!["/dev/spidev0.0".into()];
        let err = linux.into_config().unwrap_err().to_string();
        assert!(err.starts_with("invalid --spi \"/dev/spidev0.0\""), "{err}");
    }
}
