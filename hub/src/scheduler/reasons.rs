//! Why a workload has no node, as Kubernetes' `FailedScheduling` says it:
//! `0/5 nodes fit: 3 insufficient memory, 2 missing label site=lab`.
//!
//! Every node is counted once, by the first check it fails in a fixed order (the order of
//! [`Fail`]'s variants), so the counts add up to the fleet and the text is the same for the
//! same fleet. Equal reasons are grouped, most frequent first, ties by text.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::deployment::{MatchExpression, Operator};

use super::nodes::DEVICE_CLASS_LABEL;

/// The first check a node fails for a workload. Variant order is report order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fail<'a> {
    /// Disconnected: takes no new workloads.
    NotReady,
    /// Cordoned or drained: takes no new replicas.
    Unschedulable,
    /// Lacks a `nodeSelector` label (or has another value).
    MissingLabel { key: &'a str, value: &'a str },
    /// Fails a node-affinity expression.
    Expression(&'a MatchExpression),
    /// A microcontroller, and the deployment does not select microcontrollers.
    Microcontroller,
    /// Lacks devices the capabilities name, in the deployment's order.
    MissingDevices(Vec<&'a str>),
    /// Not enough memory left.
    InsufficientMemory,
    /// No instance slot left (`capacity.max_workloads`).
    TooManyWorkloads,
    /// Its desired state would outgrow one frame.
    DesiredStateFull,
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::NotReady => f.write_str("not ready"),
            Fail::Unschedulable => f.write_str("unschedulable"),
            Fail::MissingLabel { key, value } => write!(f, "missing label {key}={value}"),
            Fail::Expression(e) => {
                let values = e.values.join(", ");
                match e.operator {
                    Operator::In => write!(f, "label {} not in ({values})", e.key),
                    Operator::NotIn => write!(f, "label {} in ({values})", e.key),
                    Operator::Exists => write!(f, "missing label {}", e.key),
                    Operator::DoesNotExist => write!(f, "has label {}", e.key),
                }
            }
            Fail::Microcontroller => {
                write!(f, "microcontroller not selected ({DEVICE_CLASS_LABEL}=mcu)")
            }
            Fail::MissingDevices(list) => {
                let s = if list.len() == 1 { "" } else { "s" };
                write!(f, "missing device{s} {}", list.join(", "))
            }
            Fail::InsufficientMemory => f.write_str("insufficient memory"),
            Fail::TooManyWorkloads => f.write_str("too many workloads"),
            Fail::DesiredStateFull => f.write_str("desired state full"),
        }
    }
}

/// `0/{total} nodes fit: {count} {reason}, ...` from each node's first failure.
pub(super) fn summarize<'a>(total: usize, fails: impl IntoIterator<Item = Fail<'a>>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for fail in fails {
        *counts.entry(fail.to_string()).or_default() += 1;
    }
    if counts.is_empty() {
        return format!("0/{total} nodes fit: no nodes");
    }
    let mut grouped: Vec<(String, usize)> = counts.into_iter().collect();
    // Stable sort of a text-ordered list: ties stay by text.
    grouped.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let parts: Vec<String> = grouped
        .iter()
        .map(|(text, n)| format!("{n} {text}"))
        .collect();
    format!("0/{total} nodes fit: {}", parts.join(", "))
}

/// Why an every-node workload is not on the node it is bound to.
pub(super) fn on_node(node: &str, fail: &Fail<'_>) -> String {
    format!("node {node}: {fail}")
}
