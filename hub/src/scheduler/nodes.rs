//! The nodes of one scheduling pass, with the labels placement selects on.
//!
//! Every node carries built-in labels the hub computes from its `Hello` (a node cannot forget
//! or fake them with `--label`), so manifests can select by name, class and architecture
//! without operators labelling every node by hand, as Kubernetes' `kubernetes.io/hostname` and
//! `kubernetes.io/arch`.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use wasmfleet_proto::DeviceClass;

use crate::model::NodeRecord;

/// Built-in label: the node's name.
pub const NODE_LABEL: &str = "wasmfleet.dev/node";

/// Built-in label: `linux` or `mcu`. Microcontroller nodes also announce it themselves.
pub const DEVICE_CLASS_LABEL: &str = "wasmfleet.dev/device-class";

/// Built-in label: the architecture of the node's engine target, the part of the target
/// triple before the first `-` (`x86_64`, `aarch64`; `pulley32` on microcontrollers).
pub const ARCH_LABEL: &str = "wasmfleet.dev/arch";

/// Every label `node` is selected by: those it announced, then the built-ins, which
/// override an announced label of the same key. Of two announced values for one key the
/// smaller wins, so the result never depends on the order of the announcement.
pub fn node_labels(node: &NodeRecord) -> BTreeMap<&str, &str> {
    let mut labels: BTreeMap<&str, &str> = BTreeMap::new();
    for l in &node.hello.labels {
        labels
            .entry(l.key.as_str())
            .and_modify(|v| *v = (*v).min(l.value.as_str()))
            .or_insert(l.value.as_str());
    }
    labels.insert(NODE_LABEL, &node.name);
    labels.insert(DEVICE_CLASS_LABEL, device_class(node.hello.device_class));
    let target = node.hello.engine.target.as_str();
    match target.split('-').next() {
        Some(arch) if !arch.is_empty() => labels.insert(ARCH_LABEL, arch),
        // A record stored before engines were announced: no architecture to select by.
        _ => labels.remove(ARCH_LABEL),
    };
    labels
}

/// The value of [`DEVICE_CLASS_LABEL`] for a class.
pub fn device_class(class: DeviceClass) -> &'static str {
    match class {
        DeviceClass::Linux => "linux",
        DeviceClass::Mcu => "mcu",
    }
}

/// A node as one pass sees it: its record and its labels, computed once per pass rather than
/// once per replica and node.
pub(super) struct Candidate<'a> {
    /// The node's name (its key in the inventory).
    pub name: &'a str,
    pub record: &'a NodeRecord,
    /// Computed the first time a selector reads them: a pass over deployments that select
    /// nothing (an every-node agent) built a map per node for nothing, 370 B a node, the
    /// largest part of an apply's peak heap at 10,000 nodes.
    labels: OnceCell<BTreeMap<&'a str, &'a str>>,
}

impl<'a> Candidate<'a> {
    pub fn new(name: &'a str, record: &'a NodeRecord) -> Self {
        Candidate {
            name,
            record,
            labels: OnceCell::new(),
        }
    }

    /// Every label the node is selected by ([`node_labels`]).
    pub fn labels(&self) -> &BTreeMap<&'a str, &'a str> {
        self.labels.get_or_init(|| node_labels(self.record))
    }
}

/// The index of `name` in `nodes` (sorted by name, as the inventory is).
pub(super) fn index_of(nodes: &[Candidate<'_>], name: &str) -> Option<usize> {
    nodes.binary_search_by(|n| n.name.cmp(name)).ok()
}
