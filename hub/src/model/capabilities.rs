//! What a deployment may touch beyond its own memory (`spec.capabilities`), and its
//! application namespace and config (`metadata.namespace`, `spec.config`): the user-facing,
//! validated form of [`wasmfleet_proto::Capabilities`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmfleet_proto::Capabilities;
use wasmfleet_proto::topic::{AppTopicError, check_app_filter};

/// Namespace of deployments that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Largest key-value store a deployment may ask for on each node.
pub const MAX_KV_BYTES: u64 = 16 << 20;

/// Config keys starting with this are the host's (`wasmfleet.node`, ...).
pub const RESERVED_CONFIG_PREFIX: &str = "wasmfleet.";

/// `spec.capabilities`, as stored and served (JSON, camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CapabilitiesSpec {
    /// I2C buses, by the names nodes offer them (`i2c-1`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub i2c: Vec<String>,
    /// SPI devices (`spidev0.0`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spi: Vec<String>,
    /// GPIO pins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpio: Vec<u32>,
    /// Topic filters the module may publish to (relative to its namespace).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Topic filters the module may subscribe within.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// Bytes of persistent key-value store per node; 0: none.
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_bytes: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl CapabilitiesSpec {
    /// Whether it grants nothing.
    pub fn is_empty(&self) -> bool {
        *self == CapabilitiesSpec::default()
    }

    /// Checks names, pins and topic filters; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, names) in [("i2c", &self.i2c), ("spi", &self.spi)] {
            if let Some(bad) = names
                .iter()
                .find(|n| n.is_empty() || n.len() > 64 || n.contains(char::is_whitespace))
            {
                return Err(format!(
                    "spec.capabilities.{field}: invalid device name {bad:?}"
                ));
            }
        }
        let mut pins = self.gpio.clone();
        pins.sort_unstable();
        if let Some(w) = pins.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("spec.capabilities.gpio: pin {} listed twice", w[0]));
        }
        for (field, filters) in [("publish", &self.publish), ("subscribe", &self.subscribe)] {
            for f in filters {
                check_app_filter(f).map_err(|e| {
                    let why = match e {
                        AppTopicError::Malformed => "empty, too long, an empty level, or `$`",
                        AppTopicError::Wildcard => "`+` must be a whole level and `#` the last",
                    };
                    format!("spec.capabilities.{field}: invalid topic filter {f:?}: {why}")
                })?;
            }
        }
        if self.kv_bytes > MAX_KV_BYTES {
            return Err(format!(
                "spec.capabilities.kv: {} bytes is more than the limit of {MAX_KV_BYTES}",
                self.kv_bytes
            ));
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_wire(&self) -> Capabilities {
        Capabilities {
            i2c: self.i2c.clone(),
            spi: self.spi.clone(),
            gpio: self.gpio.clone(),
            publish: self.publish.clone(),
            subscribe: self.subscribe.clone(),
            kv_bytes: self.kv_bytes,
        }
    }
}

/// Checks `spec.config`: keys non-empty and not reserved.
pub fn validate_config(config: &BTreeMap<String, String>) -> Result<(), String> {
    for key in config.keys() {
        if key.is_empty() {
            return Err("spec.config: empty key".into());
        }
        if key.starts_with(RESERVED_CONFIG_PREFIX) {
            return Err(format!(
                "spec.config: key {key:?} is reserved (`{RESERVED_CONFIG_PREFIX}*` keys are the host's)"
            ));
        }
    }
    Ok(())
}

/// The `(module, name)` of every import of a WebAssembly module (reads only the import
/// section; the module was fully checked at upload).
pub fn module_imports(wasm: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| format!("reading the module's imports: {e}"))? {
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import =
                        import.map_err(|e| format!("reading the module's imports: {e}"))?;
                    out.push((import.module.to_string(), import.name.to_string()));
                }
            }
            wasmparser::Payload::CodeSectionStart { .. } => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Refuses a module that imports host functions its deployment is not granted, naming the
/// function and the manifest field that would grant it.
pub fn check_module_capabilities(wasm: &[u8], caps: &CapabilitiesSpec) -> Result<(), String> {
    let imports = module_imports(wasm)?;
    wasmfleet_common::abi::check_imports(
        imports.iter().map(|(m, n)| (m.as_str(), n.as_str())),
        &caps.to_wire(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_beyond_the_grants_are_refused_by_name() {
        let wasm = wat::parse_str(
            r#"(module (import "wasmfleet_v1" "gpio_write" (func (param i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1) (func (export "on_start")))"#,
        )
        .unwrap();
        assert_eq!(module_imports(&wasm).unwrap().len(), 2);
        let err = check_module_capabilities(&wasm, &CapabilitiesSpec::default()).unwrap_err();
        assert!(
            err.contains("wasmfleet_v1::gpio_write") && err.contains("capabilities.gpio"),
            "{err}"
        );
        let granted = CapabilitiesSpec {
            gpio: vec![17],
            ..Default::default()
        };
        check_module_capabilities(&wasm, &granted).unwrap();
        assert!(
            module_imports(b"\0asm\x01\0\0\0\x02\x05").is_err(),
            "truncated"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let ok = CapabilitiesSpec {
            i2c: vec!["i2c-1".into()],
            gpio: vec![17, 27],
            publish: vec!["sensors/+/temp".into()],
            subscribe: vec!["sensors/#".into()],
            kv_bytes: 64 << 10,
            ..Default::default()
        };
        ok.validate().unwrap();
        let bad = |f: fn(&mut CapabilitiesSpec)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.gpio.push(17)).contains("gpio: pin 17 listed twice"));
        assert!(bad(|c| c.publish.push("a/#/b".into())).contains("publish"));
        assert!(bad(|c| c.subscribe.push("$SYS/#".into())).contains("subscribe"));
        assert!(bad(|c| c.i2c.push("i2c 1".into())).contains("i2c"));
        assert!(bad(|c| c.kv_bytes = 1 << 30).contains("kv"));
        let mut cfg = BTreeMap::new();
        cfg.insert("wasmfleet.node".to_string(), "x".to_string());
        assert!(validate_config(&cfg).unwrap_err().contains("reserved"));
    }
}
