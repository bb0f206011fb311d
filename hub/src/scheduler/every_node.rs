//! Names of every-node workloads: `{deployment}-{8 hex digits}`, the digits FNV-1a (32 bits)
//! of the node's name.
//!
//! The name depends only on the deployment and the node, so it is the same in every pass and
//! on every hub, has no `-` in its suffix (so `deployment_of_workload` finds the deployment),
//! and stays within 63 characters (deployment names have at most 52). Eight hex digits never
//! equal a replica's ordinal (at most 10,000, so at most 5 digits), so a deployment switching
//! placement never reuses a name for another thing.
//!
//! Two nodes may hash alike (one pair in about 9,000 at 1,000 nodes). Then one of them takes
//! the name hashed with a salt (`#1`, `#2`...): the node already running a name keeps it, the
//! others are served in name order, so names never move between nodes while both exist.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::NodeName;
use crate::model::deployment::deployment_of_workload;

use super::nodes::Candidate;

/// Salts tried before a node is given up on (never reached in practice).
const MAX_SALTS: u32 = 16;

/// FNV-1a, 32 bits, of `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The workload of `deployment` bound to `node`, with salt `salt` (0: the usual name).
pub fn workload_name(deployment: &str, node: &str, salt: u32) -> String {
    let mut hash = fnv1a(0x811c_9dc5, node.as_bytes());
    if salt > 0 {
        hash = fnv1a(hash, format!("#{salt}").as_bytes());
    }
    format!("{deployment}-{hash:08x}")
}

/// The entries of `map` (a placement's `assigned` or `unschedulable`) that are every-node
/// workloads of `deployment`: names `{deployment}-…` that belong to no other deployment.
pub(super) fn workloads_in<'m, V>(
    map: &'m BTreeMap<String, V>,
    deployment: &'m str,
) -> impl Iterator<Item = (&'m String, &'m V)> {
    let prefix = format!("{deployment}-");
    map.range(prefix.clone()..)
        .take_while(move |(w, _)| w.starts_with(&prefix))
        .filter(move |(w, _)| deployment_of_workload(w) == deployment)
}

/// Names the workloads of every-node deployment `deployment` on the `matching` nodes
/// (indices into `nodes`, ascending). Returns (node index, workload name), ascending by index.
pub(super) fn bind(
    deployment: &str,
    nodes: &[Candidate<'_>],
    matching: &[usize],
    current: &BTreeMap<String, NodeName>,
) -> Vec<(usize, String)> {
    // The names of this deployment held now, by node: only these can be kept.
    let mut held: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (workload, node) in workloads_in(current, deployment) {
        held.entry(node).or_default().push(workload.as_str());
    }
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    let mut named: BTreeMap<usize, String> = BTreeMap::new();
    for &i in matching {
        let Some(names) = held.get(nodes[i].name) else {
            continue;
        };
        let keep = (0..MAX_SALTS)
            .map(|salt| workload_name(deployment, nodes[i].name, salt))
            .find(|n| names.contains(&n.as_str()) && !claimed.contains(n));
        if let Some(name) = keep {
            claimed.insert(name.clone());
            named.insert(i, name);
        }
    }
    for &i in matching {
        if named.contains_key(&i) {
            continue;
        }
        let free = (0..MAX_SALTS)
            .map(|salt| workload_name(deployment, nodes[i].name, salt))
            .find(|n| !claimed.contains(n));
        if let Some(name) = free {
            claimed.insert(name.clone());
            named.insert(i, name);
        }
    }
    named.into_iter().collect()
}
