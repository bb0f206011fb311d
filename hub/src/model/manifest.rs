//! kubectl-style manifests (`apiVersion`/`kind`/`metadata`/`spec`), parsed strictly: an
//! unknown field or kind is an error naming it and its line, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::capabilities::{CapabilitiesSpec, DEFAULT_NAMESPACE};
use super::deployment::{RestartPolicyName, validate_name};
use super::quantity::{parse_bytes, parse_cpu_millis, parse_duration};

/// The API version manifests must declare.
pub const API_VERSION: &str = "wasmfleet.dev/v1";

/// Memory limit when a manifest sets none.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// Why a manifest was refused. Always names the file, and the line and field where known.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ManifestError {
    /// The manifest file.
    pub path: String,
    /// What is wrong, with line/column when the YAML parser knows them.
    pub message: String,
}

/// One deployment read from a manifest, with its module path resolved relative to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentManifest {
    /// `metadata.name`.
    pub name: String,
    /// `spec.module`, resolved against the manifest's directory.
    pub module_path: PathBuf,
    /// `spec.replicas` (default 1).
    pub replicas: u32,
    /// `spec.args`.
    pub args: Vec<String>,
    /// `spec.env`.
    pub env: BTreeMap<String, String>,
    /// `spec.resources.memory` in bytes (default 64Mi).
    pub memory_bytes: u64,
    /// `spec.resources.cpu` in millicores (default: unthrottled).
    pub cpu_millis: Option<u32>,
    /// `spec.resources.maxRunTime` in milliseconds (default: none).
    pub max_run_ms: Option<u64>,
    /// `spec.restartPolicy` (default Always).
    pub restart_policy: RestartPolicyName,
    /// `metadata.namespace` (default `default`).
    pub namespace: String,
    /// `spec.config`, every value as text.
    pub config: BTreeMap<String, String>,
    /// `spec.capabilities`.
    pub capabilities: CapabilitiesSpec,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
}

/// First pass: only what identifies the document, so an unknown kind is reported as such.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Second pass, straight from the text so errors keep their line and column.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    #[allow(dead_code)] // checked in the first pass
    api_version: String,
    #[allow(dead_code)] // checked in the first pass
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // accepted for kubectl familiarity; not used for placement yet
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    module: String,
    #[serde(default = "one")]
    replicas: u32,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    restart_policy: RestartPolicyName,
    #[serde(default)]
    config: BTreeMap<String, Scalar>,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    node_selector: BTreeMap<String, Scalar>,
}

/// A `spec.config` value: any YAML scalar, kept as text (`interval: 1s`, `threshold: 25`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(t) => t,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Capabilities {
    #[serde(default)]
    i2c: Vec<String>,
    #[serde(default)]
    spi: Vec<String>,
    #[serde(default)]
    gpio: Vec<u32>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    kv: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Resources {
    memory: Option<String>,
    cpu: Option<String>,
    max_run_time: Option<String>,
}

/// Reads every document of the manifest file at `path`.
pub fn load(path: &Path) -> Result<Vec<DeploymentManifest>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        path: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|message| ManifestError {
        path: path.display().to_string(),
        message,
    })
}

/// Parses manifest text; module paths are resolved against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<DeploymentManifest>, String> {
    let mut out = Vec::new();
    let docs =
        yaml_serde::Deserializer::from_str(text).zip(yaml_serde::Deserializer::from_str(text));
    for (index, (loose, strict)) in docs.enumerate() {
        let at = |e: yaml_serde::Error| format!("document {}: {e}", index + 1);
        let value = yaml_serde::Value::deserialize(loose).map_err(at)?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let header: Header = yaml_serde::from_value(value).map_err(at)?;
        check_header(&header)?;
        let doc = Document::deserialize(strict).map_err(at)?;
        out.push(to_deployment(doc, base)?);
    }
    if out.is_empty() {
        return Err("no documents found".into());
    }
    Ok(out)
}

fn check_header(h: &Header) -> Result<(), String> {
    match h.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "apiVersion: expected {API_VERSION:?}, got {other:?}"
            ));
        }
        None => return Err(format!("apiVersion: missing (expected {API_VERSION:?})")),
    }
    match h.kind.as_deref() {
        Some("Deployment") => Ok(()),
        Some(other) => Err(format!(
            "kind: unknown kind {other:?} (supported: Deployment)"
        )),
        None => Err("kind: missing (expected Deployment)".into()),
    }
}

fn to_deployment(doc: Document, base: &Path) -> Result<DeploymentManifest, String> {
    let name = doc.metadata.name;
    validate_name(&name).map_err(|e| format!("metadata.name: {e}"))?;
    let spec = doc.spec;
    let memory_bytes = match spec.resources.memory.clone() {
        Some(text) => parse_bytes(&text).map_err(|e| format!("spec.resources.memory: {e}"))?,
        None => DEFAULT_MEMORY,
    };
    let cpu_millis = spec
        .resources
        .cpu
        .map(|t| parse_cpu_millis(&t).map_err(|e| format!("spec.resources.cpu: {e}")))
        .transpose()?;
    let max_run_ms = spec
        .resources
        .max_run_time
        .map(|t| match parse_duration(&t) {
            Ok(d) if d.is_zero() => Err("spec.resources.maxRunTime: must be more than 0".into()),
            Ok(d) => Ok(d.as_millis() as u64),
            Err(e) => Err(format!("spec.resources.maxRunTime: {e}")),
        })
        .transpose()?;
    if spec.module.trim().is_empty() {
        return Err("spec.module: must name a .wasm file".into());
    }
    let caps = spec.capabilities;
    let kv_bytes = caps
        .kv
        .map(|t| parse_bytes(&t).map_err(|e| format!("spec.capabilities.kv: {e}")))
        .transpose()?
        .unwrap_or(0);
    let capabilities = CapabilitiesSpec {
        i2c: caps.i2c,
        spi: caps.spi,
        gpio: caps.gpio,
        publish: caps.publish,
        subscribe: caps.subscribe,
        kv_bytes,
    };
    capabilities.validate()?;
    Ok(DeploymentManifest {
        name,
        module_path: base.join(&spec.module),
        replicas: spec.replicas,
        args: spec.args,
        env: spec.env,
        memory_bytes,
        cpu_millis,
        max_run_ms,
        restart_policy: spec.restart_policy,
        namespace: doc
            .metadata
            .namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        config: spec
            .config
            .into_iter()
            .map(|(k, v)| (k, v.into_text()))
            .collect(),
        capabilities,
        node_selector: spec
            .node_selector
            .into_iter()
            .map(|(k, v)| (k, v.into_text()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: hello}
spec:
  module: ./hello.wasm
  replicas: 2
  args: [\"--interval\", \"1s\"]
  env: {GREETING: hi}
  resources: {memory: 16Mi, cpu: 250m, maxRunTime: 90s}
";

    #[test]
    fn parses_the_documented_example() {
        let d = parse(HELLO, Path::new("/apps")).unwrap();
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!(d.name, "hello");
        assert_eq!(d.module_path, Path::new("/apps/./hello.wasm"));
        assert_eq!(d.replicas, 2);
        assert_eq!(d.args, ["--interval", "1s"]);
        assert_eq!(d.env["GREETING"], "hi");
        assert_eq!(d.memory_bytes, 16 << 20);
        assert_eq!(d.cpu_millis, Some(250));
        assert_eq!(d.max_run_ms, Some(90_000));
        assert_eq!(d.restart_policy, RestartPolicyName::Always);
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let bad = HELLO.replace("replicas: 2", "replica: 2");
        let err = parse(&bad, Path::new(".")).unwrap_err();
        assert!(err.contains("unknown field `replica`"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn unknown_kind_and_version_are_named() {
        let err = parse(
            &HELLO.replace("kind: Deployment", "kind: Pod"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.contains("unknown kind \"Pod\""), "{err}");
        let err = parse(
            &HELLO.replace("wasmfleet.dev/v1", "apps/v1"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.contains("apiVersion"), "{err}");
    }

    #[test]
    fn malformed_yaml_reports_a_line() {
        let err = parse("apiVersion: [unclosed\nkind: x", Path::new(".")).unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn bad_quantity_and_name_are_named() {
        let err = parse(&HELLO.replace("16Mi", "16MB"), Path::new(".")).unwrap_err();
        assert!(err.starts_with("spec.resources.memory"), "{err}");
        let err = parse(&HELLO.replace("250m", "lots"), Path::new(".")).unwrap_err();
        assert!(err.starts_with("spec.resources.cpu: \"lots\""), "{err}");
        let err = parse(&HELLO.replace("90s", "0s"), Path::new(".")).unwrap_err();
        assert!(err.starts_with("spec.resources.maxRunTime"), "{err}");
        let err = parse(&HELLO.replace("90s", "soon"), Path::new(".")).unwrap_err();
        assert!(err.starts_with("spec.resources.maxRunTime"), "{err}");
        let err = parse(
            &HELLO.replace("name: hello", "name: Hello_World"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.starts_with("metadata.name"), "{err}");
    }

    #[test]
    fn config_and_capabilities() {
        let text = "\
apiVersion: wasmfleet.dev/v1
kind: Deployment
metadata: {name: alarm, namespace: plant-1}
spec:
  module: ./alarm.wasm
  config: {threshold: 25, interval: 1s, on: true}
  capabilities:
    gpio: [17]
    subscribe: [\"sensors/+/temp\"]
    kv: 4Ki
";
        let d = &parse(text, Path::new(".")).unwrap()[0];
        assert_eq!(d.namespace, "plant-1");
        assert_eq!(d.config["threshold"], "25");
        assert_eq!(d.config["interval"], "1s");
        assert_eq!(d.config["on"], "true");
        assert_eq!(d.capabilities.gpio, [17]);
        assert_eq!(d.capabilities.kv_bytes, 4096);
        let err = parse(&text.replace("gpio: [17]", "gpios: [17]"), Path::new(".")).unwrap_err();
        assert!(err.contains("unknown field `gpios`"), "{err}");
        let err = parse(&text.replace("4Ki", "lots"), Path::new(".")).unwrap_err();
        assert!(err.starts_with("spec.capabilities.kv"), "{err}");
        let err = parse(
            &text.replace("sensors/+/temp", "sensors/#/temp"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.starts_with("spec.capabilities.subscribe"), "{err}");
        assert_eq!(
            parse(HELLO, Path::new(".")).unwrap()[0].namespace,
            "default"
        );
    }

    #[test]
    fn multiple_documents_and_defaults() {
        let two = format!(
            "{HELLO}---\n{}",
            HELLO
                .replace("name: hello", "name: other")
                .replace("  replicas: 2\n", "")
        );
        let d = parse(&two, Path::new(".")).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].replicas, 1);
    }
}
