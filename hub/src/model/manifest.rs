//! kubectl-style manifests (`apiVersion`/`kind`/`metadata`/`spec`), parsed strictly: an
//! unknown field or kind is an error naming it and its line, never silently ignored.
//!
//! Placement fields:
//!
//! ```yaml
//! spec:
//!   placement: every-node        # or `replicas` (the default); excludes spec.replicas
//!   nodeSelector: {site: lab}    # labels a node must carry
//!   affinity:
//!     nodeAffinity:
//!       matchExpressions:        # all must hold, together with nodeSelector
//!         - {key: wasmfleet.dev/arch, operator: In, values: [aarch64, x86_64]}
//!         - {key: maintenance, operator: DoesNotExist}
//! ```
//!
//! `nodeAffinity.matchExpressions` is a simplified form of Kubernetes' node affinity. The
//! Kubernetes spelling, `nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.
//! nodeSelectorTerms[0].matchExpressions`, is accepted too, with exactly one term (Kubernetes
//! ORs terms; wasmfleet ANDs every expression). Operators: `In` and `NotIn` with at least one
//! value, `Exists` and `DoesNotExist` with none. Every node also carries the built-in labels
//! `wasmfleet.dev/node`, `wasmfleet.dev/device-class` and `wasmfleet.dev/arch` (see
//! [`crate::scheduler`]).
//!
//! Rollout of a new revision (every field optional; see [`crate::model::rollout`]):
//!
//! ```yaml
//! spec:
//!   rollout:
//!     waves: [1, 10%, 50%, 100%]   # cumulative; default [100%]
//!     healthyFor: 30s              # Running without a restart before the next wave (10s)
//!     maxUnavailable: 10%          # switched and not yet Running at once (25%)
//!     failureThreshold: 1          # failures that stop the rollout and roll back (1)
//!     progressDeadline: 5m         # longest wave (5m)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::capabilities::{CapabilitiesSpec, DEFAULT_NAMESPACE};
use super::deployment::{
    AFFINITY_FIELD, MatchExpression, Operator, PlacementPolicy, RestartPolicyName, validate_name,
};
use super::quantity::{parse_bytes, parse_cpu_millis, parse_duration};
use super::rollout::{RolloutStrategy, Share};

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
    /// `spec.replicas` (default 1; 0 with `placement: every-node`).
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
    /// `spec.affinity.nodeAffinity` expressions, in order.
    pub node_affinity: Vec<MatchExpression>,
    /// `spec.placement` (default `replicas`).
    pub placement: PlacementPolicy,
    /// `spec.rollout`.
    pub rollout: RolloutStrategy,
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
    /// Absent: 1, or none with `placement: every-node` (where setting it is an error).
    #[serde(default)]
    replicas: Option<u32>,
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
    #[serde(default)]
    affinity: Affinity,
    #[serde(default)]
    placement: PlacementPolicy,
    #[serde(default)]
    rollout: Rollout,
}

/// `spec.rollout`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rollout {
    waves: Option<Vec<Scalar>>,
    healthy_for: Option<String>,
    max_unavailable: Option<Scalar>,
    failure_threshold: Option<u32>,
    progress_deadline: Option<String>,
}

impl Rollout {
    fn into_strategy(self) -> Result<RolloutStrategy, String> {
        let mut s = RolloutStrategy::default();
        if let Some(waves) = self.waves {
            s.waves = waves
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    Share::parse(&w.into_text())
                        .map_err(|e| format!("spec.rollout.waves[{i}]: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        let ms = |field: &str, text: &str| {
            parse_duration(text)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| format!("spec.rollout.{field}: {e}"))
        };
        if let Some(t) = self.healthy_for {
            s.healthy_for_ms = ms("healthyFor", &t)?;
        }
        if let Some(t) = self.progress_deadline {
            s.progress_deadline_ms = ms("progressDeadline", &t)?;
        }
        if let Some(m) = self.max_unavailable {
            s.max_unavailable = Share::parse(&m.into_text())
                .map_err(|e| format!("spec.rollout.maxUnavailable: {e}"))?;
        }
        if let Some(f) = self.failure_threshold {
            s.failure_threshold = f;
        }
        s.validate()?;
        Ok(s)
    }
}

/// `spec.affinity`: only node affinity.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Affinity {
    #[serde(default)]
    node_affinity: NodeAffinity,
}

/// `spec.affinity.nodeAffinity`: the short form, the Kubernetes form, or both (ANDed).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeAffinity {
    #[serde(default)]
    match_expressions: Vec<Expression>,
    required_during_scheduling_ignored_during_execution: Option<Required>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Required {
    node_selector_terms: Vec<Term>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Term {
    #[serde(default)]
    match_expressions: Vec<Expression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expression {
    key: String,
    operator: Operator,
    #[serde(default)]
    values: Vec<Scalar>,
}

const REQUIRED_TERMS: &str =
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";

/// The expressions of both forms, each checked under the field path the user wrote.
fn expressions(affinity: NodeAffinity) -> Result<Vec<MatchExpression>, String> {
    let convert = |field: &str, list: Vec<Expression>| {
        list.into_iter()
            .enumerate()
            .map(|(i, e)| {
                let e = MatchExpression {
                    key: e.key,
                    operator: e.operator,
                    values: e.values.into_iter().map(Scalar::into_text).collect(),
                };
                e.validate().map_err(|m| format!("{field}[{i}]: {m}"))?;
                Ok(e)
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let mut out = convert(AFFINITY_FIELD, affinity.match_expressions)?;
    if let Some(required) = affinity.required_during_scheduling_ignored_during_execution {
        let mut terms = required.node_selector_terms;
        if terms.len() != 1 {
            return Err(format!(
                "{REQUIRED_TERMS}: exactly one term is supported, got {} (wasmfleet ANDs \
                 expressions; it has no OR of terms)",
                terms.len()
            ));
        }
        let term = terms.remove(0);
        out.extend(convert(
            &format!("{REQUIRED_TERMS}[0].matchExpressions"),
            term.match_expressions,
        )?);
    }
    Ok(out)
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
    let replicas = match (spec.placement, spec.replicas) {
        (PlacementPolicy::Replicas, n) => n.unwrap_or(1),
        (PlacementPolicy::EveryNode, None) => 0,
        (PlacementPolicy::EveryNode, Some(_)) => {
            return Err(
                "spec.replicas: not allowed with spec.placement: every-node \
                 (it runs one replica on every matching node)"
                    .into(),
            );
        }
    };
    let node_affinity = expressions(spec.affinity.node_affinity)?;
    let rollout = spec.rollout.into_strategy()?;
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
        replicas,
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
        node_affinity,
        placement: spec.placement,
        rollout,
    })
}

#[cfg(test)]
mod tests;
