//! Deployments: the desired state a user declares, as the hub stores and serves it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmfleet_proto::{
    Code, ConfigEntry, Digest, EnvVar, Limits, ModuleRef, RestartPolicy, WorkloadSpec,
};

use super::capabilities::{CapabilitiesSpec, DEFAULT_NAMESPACE, validate_config};
use super::rollout::{REVISION_HISTORY, RevisionRecord, RolloutStatus, RolloutStrategy};

mod placement;
pub use placement::{AFFINITY_FIELD, MatchExpression, Operator, PlacementPolicy};

/// Most replicas one deployment may ask for.
pub const MAX_REPLICAS: u32 = 10_000;

/// Most bytes of arguments and environment one spec may carry. Every replica repeats them in
/// its node's desired state, which must fit one frame ([`wasmfleet_proto::MAX_FRAME_LEN`]).
pub const MAX_SPEC_BYTES: usize = 16 * 1024;

/// Longest deployment name: leaves room for the `-{ordinal}` (at most 5 digits) and the
/// `-{8 hex digits}` of every-node workload names within the 63-character limit of
/// [`wasmfleet_proto::name`].
pub const MAX_DEPLOYMENT_NAME: usize = 52;

/// What a user declares for one deployment (the `spec` of a manifest, with the module already
/// uploaded and replaced by its content address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// SHA-256 of the module, hex.
    pub module: String,
    /// Size of the module in bytes.
    pub module_size: u64,
    /// Number of instances across the fleet; 0 with [`PlacementPolicy::EveryNode`], which
    /// runs one on every matching node instead.
    pub replicas: u32,
    /// Arguments passed to the module after argv\[0\].
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Memory limit per instance (all its memories and tables), in bytes.
    pub memory_bytes: u64,
    /// CPU limit per instance in millicores; none: unthrottled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Longest run in milliseconds before the agent stops it as Failed; none: unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
    /// What agents do when an instance exits.
    #[serde(default)]
    pub restart_policy: RestartPolicyName,
    /// Application namespace: the module's topics live under `wf/v1/app/{namespace}/`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Values the module reads with `config_get`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Host capabilities granted to the module.
    #[serde(default, skip_serializing_if = "CapabilitiesSpec::is_empty")]
    pub capabilities: CapabilitiesSpec,
    /// Node labels a node must carry to run it (`spec.nodeSelector`). Microcontroller nodes
    /// take only deployments that select `wasmfleet.dev/device-class: mcu`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Label expressions a node must satisfy, all of them, together with `node_selector`
    /// (JSON `nodeAffinity`; in a manifest `spec.affinity.nodeAffinity.matchExpressions`, see
    /// [`crate::model::manifest`]). Unlike Kubernetes' `...IgnoredDuringExecution`, they are
    /// re-checked on every pass, as `nodeSelector` is: a node whose labels stop matching
    /// loses the workload (a replica is placed again elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_affinity: Vec<MatchExpression>,
    /// How instances are counted: `replicas` (default) or `every-node`. Defaulted so specs
    /// stored before it existed still load.
    #[serde(default, skip_serializing_if = "PlacementPolicy::is_replicas")]
    pub placement: PlacementPolicy,
    /// How a new revision reaches the replicas (`spec.rollout`); not part of the template, so
    /// changing it alone starts no rollout.
    #[serde(default, skip_serializing_if = "is_default_rollout")]
    pub rollout: RolloutStrategy,
}

fn is_default_rollout(r: &RolloutStrategy) -> bool {
    *r == RolloutStrategy::default()
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

/// Restart policy as it appears in manifests and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicyName {
    /// Restart on every exit.
    #[default]
    Always,
    /// Restart after failures only.
    OnFailure,
    /// Never restart.
    Never,
}

impl From<RestartPolicyName> for RestartPolicy {
    fn from(p: RestartPolicyName) -> Self {
        match p {
            RestartPolicyName::Always => RestartPolicy::Always,
            RestartPolicyName::OnFailure => RestartPolicy::OnFailure,
            RestartPolicyName::Never => RestartPolicy::Never,
        }
    }
}

/// Why a deployment spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The deployment name is not usable in topics and workload names.
    #[error("invalid deployment name {name:?}: {reason}")]
    Name {
        /// The offending name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The module digest is not 64 hex digits.
    #[error("spec.module: {0}")]
    Module(String),
    /// Too many replicas.
    #[error("spec.replicas: {0} is more than the limit of {MAX_REPLICAS}")]
    Replicas(u32),
    /// A memory limit of zero.
    #[error("spec.resources.memory must be more than 0")]
    Memory,
    /// Arguments and environment too large to ship in desired states.
    #[error("spec.args, spec.env and spec.config total {0} bytes; the limit is {MAX_SPEC_BYTES}")]
    TooLarge(usize),
    /// An environment variable name that WASI cannot carry.
    #[error("spec.env: invalid variable name {0:?} (must be non-empty, without '=' or NUL)")]
    EnvName(String),
    /// Bad namespace, config or capabilities (the message names the field).
    #[error("{0}")]
    Field(String),
}

/// The deployment a workload name (`{deployment}-{ordinal}`) belongs to.
pub fn deployment_of_workload(workload: &str) -> &str {
    workload.rsplit_once('-').map_or(workload, |(d, _)| d)
}

/// Checks a deployment name.
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let fail = |reason: String| SpecError::Name {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_DEPLOYMENT_NAME {
        return Err(fail(format!(
            "longer than {MAX_DEPLOYMENT_NAME} characters"
        )));
    }
    wasmfleet_proto::name::validate(name).map_err(|e| fail(e.to_string()))
}

impl DeploymentSpec {
    /// Checks everything that does not need the blob store.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.digest()?;
        self.rollout.validate().map_err(SpecError::Field)?;
        if self.replicas > MAX_REPLICAS {
            return Err(SpecError::Replicas(self.replicas));
        }
        if self.memory_bytes == 0 {
            return Err(SpecError::Memory);
        }
        if let Some(bad) = self
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains(['=', '\0']))
        {
            return Err(SpecError::EnvName(bad.clone()));
        }
        wasmfleet_proto::name::validate(&self.namespace).map_err(|e| {
            SpecError::Field(format!("metadata.namespace {:?}: {e}", self.namespace))
        })?;
        validate_config(&self.config).map_err(SpecError::Field)?;
        self.capabilities.validate().map_err(SpecError::Field)?;
        if self.node_selector.keys().any(|k| k.trim().is_empty()) {
            return Err(SpecError::Field(
                "spec.nodeSelector: label keys must not be empty".into(),
            ));
        }
        for (i, e) in self.node_affinity.iter().enumerate() {
            e.validate()
                .map_err(|m| SpecError::Field(format!("{AFFINITY_FIELD}[{i}]: {m}")))?;
        }
        if self.placement == PlacementPolicy::EveryNode && self.replicas != 0 {
            return Err(SpecError::Field(
                "spec.replicas: must not be set with spec.placement: every-node \
                 (it runs one replica on every matching node)"
                    .into(),
            ));
        }
        let pairs =
            |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let expressions = self
            .node_affinity
            .iter()
            .map(|e| e.key.len() + e.values.iter().map(String::len).sum::<usize>())
            .sum::<usize>();
        let bytes = self.args.iter().map(String::len).sum::<usize>()
            + pairs(&self.env)
            + pairs(&self.config)
            + pairs(&self.node_selector)
            + expressions;
        if bytes > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge(bytes));
        }
        Ok(())
    }

    /// The module's content address.
    pub fn digest(&self) -> Result<Digest, SpecError> {
        self.module
            .parse::<Digest>()
            .map_err(|e| SpecError::Module(e.to_string()))
    }

    /// True when `other` runs something different (anything but the replica count differs).
    /// Only such changes bump the template revision and restart instances.
    pub fn template_differs(&self, other: &DeploymentSpec) -> bool {
        let strip = |s: &DeploymentSpec| DeploymentSpec {
            replicas: 0,
            rollout: RolloutStrategy::default(),
            ..s.clone()
        };
        strip(self) != strip(other)
    }
}

/// A stored deployment: the spec plus the hub's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// Deployment name.
    pub name: String,
    /// The declared spec.
    pub spec: DeploymentSpec,
    /// Bumped on every spec change, as `metadata.generation` in Kubernetes.
    pub generation: u64,
    /// Bumped when the template changes (what runs), not on scaling.
    pub revision: u64,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// When its spec last changed, ms since the Unix epoch.
    pub updated_ms: u64,
    /// The rollout of `revision` (none in records from before rollouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Recent revisions, oldest first: what `rollout history` lists and `undo` goes back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionRecord>,
}

impl DeploymentRecord {
    /// Name of replica `ordinal`.
    pub fn workload_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// How many instances it asks for, as an event or `describe` says it.
    pub fn replicas_text(&self) -> String {
        match self.spec.placement {
            PlacementPolicy::Replicas => format!("{} replicas", self.spec.replicas),
            PlacementPolicy::EveryNode => "one replica on every matching node".into(),
        }
    }

    /// Upper bound of the bytes one replica adds to its node's desired-state frame.
    pub fn wire_size(&self) -> usize {
        // Measured inside a one-workload desired state: an upper bound (it includes the
        // frame's own few bytes), which is what capacity planning wants.
        self.workload_spec(u32::MAX)
            .map_or(wasmfleet_proto::MAX_FRAME_LEN, |s| {
                let state = wasmfleet_proto::DesiredState {
                    fleet: u64::MAX,
                    generation: u64::MAX,
                    workloads: vec![s],
                };
                wasmfleet_proto::encode(&state).len()
            })
    }

    /// The spec of replica `ordinal` as sent to a node.
    pub fn workload_spec(&self, ordinal: u32) -> Result<WorkloadSpec, SpecError> {
        self.workload_spec_named(self.workload_name(ordinal))
    }

    /// The spec of its workload `name` as sent to a node: a replica's
    /// ([`Self::workload_name`]) or an every-node workload's (named by the scheduler).
    pub fn workload_spec_named(&self, name: String) -> Result<WorkloadSpec, SpecError> {
        self.spec_of(&self.spec, self.revision, name)
    }

    /// The spec of workload `name`, the `index`-th of the deployment's workloads in order:
    /// the current revision's, or the stable revision's while a rollout has not reached it
    /// (or after a failed rollout went back).
    pub fn workload_spec_at(&self, name: String, index: usize) -> Result<WorkloadSpec, SpecError> {
        let (revision, spec) = self.template_at(index);
        self.spec_of(spec, revision, name)
    }

    /// The revision, and its template, that the `index`-th of the deployment's workloads runs.
    pub fn template_at(&self, index: usize) -> (u64, &DeploymentSpec) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.rollout
            .as_ref()
            .filter(|r| !r.runs_new(index))
            .and_then(|r| r.stable)
            .and_then(|s| self.history.iter().find(|h| h.revision == s))
            .map_or((self.revision, &self.spec), |h| (h.revision, &h.spec))
    }

    /// Records a new revision in the history, keeping the last [`REVISION_HISTORY`] and the
    /// stable one.
    pub fn push_history(&mut self, record: RevisionRecord) {
        self.history.retain(|h| h.revision != record.revision);
        self.history.push(record);
        let stable = self.rollout.as_ref().and_then(|r| r.stable);
        self.prune_history(stable);
    }

    /// Drops revisions beyond [`REVISION_HISTORY`], oldest first, never `keep`.
    pub fn prune_history(&mut self, keep: Option<u64>) {
        while self.history.len() > REVISION_HISTORY {
            let Some(i) = self.history.iter().position(|h| Some(h.revision) != keep) else {
                break;
            };
            self.history.remove(i);
        }
    }

    fn spec_of(
        &self,
        spec: &DeploymentSpec,
        revision: u64,
        name: String,
    ) -> Result<WorkloadSpec, SpecError> {
        Ok(WorkloadSpec {
            name,
            deployment: self.name.clone(),
            revision,
            module: ModuleRef {
                digest: spec.digest()?,
                size: spec.module_size,
            },
            args: spec.args.clone(),
            env: spec
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            limits: Limits {
                memory_bytes: spec.memory_bytes,
                cpu_millis: spec.cpu_millis,
                max_run_ms: spec.max_run_ms,
            },
            restart: spec.restart_policy.into(),
            // Which code depends on the node it is placed on; see `reconcile::desired`.
            code: Code::Source,
            namespace: spec.namespace.clone(),
            config: spec
                .config
                .iter()
                .map(|(key, value)| ConfigEntry {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            capabilities: spec.capabilities.to_wire(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(replicas: u32) -> DeploymentSpec {
        DeploymentSpec {
            module: "ab".repeat(32),
            module_size: 100,
            replicas,
            args: vec!["--interval".into(), "1s".into()],
            env: BTreeMap::from([("GREETING".into(), "hi".into())]),
            memory_bytes: 16 << 20,
            cpu_millis: None,
            max_run_ms: None,
            restart_policy: RestartPolicyName::Always,
            namespace: DEFAULT_NAMESPACE.into(),
            config: BTreeMap::new(),
            capabilities: CapabilitiesSpec::default(),
            node_selector: BTreeMap::new(),
            node_affinity: Vec::new(),
            placement: PlacementPolicy::Replicas,
            rollout: RolloutStrategy::default(),
        }
    }

    fn expr(key: &str, operator: Operator, values: &[&str]) -> MatchExpression {
        MatchExpression {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn expressions_match_as_in_kubernetes() {
        let is = |e: &MatchExpression, v: Option<&str>| e.matches(v);
        let e = expr("arch", Operator::In, &["x86_64", "aarch64"]);
        assert!(is(&e, Some("aarch64")) && !is(&e, Some("riscv64")) && !is(&e, None));
        let e = expr("arch", Operator::NotIn, &["x86_64"]);
        assert!(is(&e, Some("aarch64")) && !is(&e, Some("x86_64")) && is(&e, None));
        let e = expr("gpu", Operator::Exists, &[]);
        assert!(is(&e, Some("")) && !is(&e, None));
        let e = expr("gpu", Operator::DoesNotExist, &[]);
        assert!(!is(&e, Some("yes")) && is(&e, None));
    }

    #[test]
    fn affinity_and_placement_validation_names_the_field() {
        let mut s = spec(1);
        s.node_affinity = vec![
            expr("site", Operator::Exists, &[]),
            expr("arch", Operator::In, &[]),
        ];
        let err = s.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "spec.affinity.nodeAffinity.matchExpressions[1]: operator In needs at least one value"
        );
        s.node_affinity = vec![expr("gpu", Operator::DoesNotExist, &["x"])];
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.ends_with("[0]: operator DoesNotExist takes no values"),
            "{err}"
        );
        s.node_affinity = vec![expr(" ", Operator::Exists, &[])];
        assert!(s.validate().unwrap_err().to_string().contains("key"));
        let mut s = spec(2);
        s.placement = PlacementPolicy::EveryNode;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.starts_with("spec.replicas:"), "{err}");
        s.replicas = 0;
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn specs_stored_before_placement_and_affinity_still_load() {
        let mut json = serde_json::to_value(spec(3)).unwrap();
        let obj = json.as_object_mut().unwrap();
        assert!(!obj.contains_key("placement") && !obj.contains_key("nodeAffinity"));
        let back: DeploymentSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.placement, PlacementPolicy::Replicas);
        assert!(back.node_affinity.is_empty());
        let mut every = spec(0);
        every.placement = PlacementPolicy::EveryNode;
        every.node_affinity = vec![expr("arch", Operator::NotIn, &["pulley32"])];
        let text = serde_json::to_string(&every).unwrap();
        assert!(text.contains(r#""placement":"every-node""#), "{text}");
        assert_eq!(
            serde_json::from_str::<DeploymentSpec>(&text).unwrap(),
            every
        );
    }

    #[test]
    fn workload_names_lead_back_to_their_deployment() {
        let d = DeploymentRecord {
            name: "web-eu.2".into(),
            spec: spec(1),
            generation: 1,
            revision: 1,
            created_ms: 0,
            updated_ms: 0,
            rollout: None,
            history: vec![],
        };
        assert_eq!(deployment_of_workload(&d.workload_name(17)), "web-eu.2");
    }

    #[test]
    fn scaling_is_not_a_template_change() {
        assert!(!spec(1).template_differs(&spec(5)));
        let mut other = spec(1);
        other.args.push("x".into());
        assert!(spec(1).template_differs(&other));
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = spec(1);
        s.module = "nothex".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("spec.module")
        );
        let mut s = spec(1);
        s.env.insert("A=B".into(), "x".into());
        assert!(s.validate().unwrap_err().to_string().contains("\"A=B\""));
        assert!(validate_name(&"a".repeat(53)).is_err());
        let mut s = spec(1);
        s.env.insert("BIG".into(), "x".repeat(MAX_SPEC_BYTES));
        assert!(matches!(s.validate(), Err(SpecError::TooLarge(_))));
        assert!(
            validate_name("Hello")
                .unwrap_err()
                .to_string()
                .contains("\"Hello\"")
        );
    }
}
