//! How a deployment chooses its nodes: `spec.placement` and node-affinity expressions.

use serde::{Deserialize, Serialize};

/// How a deployment's instances are counted and placed (`spec.placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementPolicy {
    /// `spec.replicas` instances, spread over the nodes that fit (a Kubernetes Deployment).
    #[default]
    Replicas,
    /// One instance on every node that matches the selector, affinity and devices, including
    /// nodes that join later (a Kubernetes DaemonSet). Instances are bound to their node: they
    /// stay while it is NotReady, cordoned or drained, and are never moved elsewhere.
    EveryNode,
}

impl PlacementPolicy {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Replicas => "replicas",
            PlacementPolicy::EveryNode => "every-node",
        }
    }

    pub(crate) fn is_replicas(&self) -> bool {
        *self == PlacementPolicy::Replicas
    }
}

/// One node-affinity requirement: a label `key`, an `operator` and its `values`, as a
/// Kubernetes `NodeSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchExpression {
    /// The label key.
    pub key: String,
    /// How the node's value of `key` is compared with `values`.
    pub operator: Operator,
    /// One or more values for `In` and `NotIn`; none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operators of [`MatchExpression`] (Kubernetes' set, without `Gt`/`Lt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The node has the label, with one of the values.
    In,
    /// The node lacks the label, or has it with none of the values.
    NotIn,
    /// The node has the label, with any value.
    Exists,
    /// The node lacks the label.
    DoesNotExist,
}

impl MatchExpression {
    /// Whether a node whose value of `key` is `value` (`None`: no such label) satisfies it.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let listed = || value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            Operator::In => listed(),
            Operator::NotIn => !listed(),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    /// Checks the shape: a key, and values exactly when the operator compares them.
    pub fn validate(&self) -> Result<(), String> {
        if self.key.trim().is_empty() {
            return Err("key must not be empty".into());
        }
        match (self.operator, self.values.is_empty()) {
            (Operator::In | Operator::NotIn, true) => Err(format!(
                "operator {:?} needs at least one value",
                self.operator
            )),
            (Operator::Exists | Operator::DoesNotExist, false) => {
                Err(format!("operator {:?} takes no values", self.operator))
            }
            _ => Ok(()),
        }
    }
}

/// Where stored and API specs keep their affinity, for error messages.
pub const AFFINITY_FIELD: &str = "spec.affinity.nodeAffinity.matchExpressions";
