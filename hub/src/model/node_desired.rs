//! What the hub holds of each node's desired state.
//!
//! The wire form ([`DesiredState`]) carries each workload's whole spec: 408 bytes inline plus
//! its strings. An every-node deployment gives every node a spec equal to every other's but
//! for the workload's name, and held per node those copies were the largest part of the
//! hub's memory per node. So the hub holds a node's workloads as their names and a *template*
//! each: the spec with an empty name, interned ([`Templates`]), shared by every node that runs
//! the same revision with the same code. The wire form is built when it is published.

use std::sync::Arc;

use bytes::Bytes;

use wasmfleet_proto::{DesiredState, WorkloadSpec};

use super::interned::Interned;

/// The distinct workload templates of the fleet (specs with an empty name).
pub type Templates = Interned<WorkloadSpec>;

/// A workload on a node: its name and its shared template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The workload's name (unique in the fleet).
    pub name: Box<str>,
    /// Its spec but for the name, which is empty here.
    pub template: Arc<WorkloadSpec>,
}

impl Placed {
    /// `spec` as held: its name taken out, the rest shared through `templates`.
    pub fn new(mut spec: WorkloadSpec, templates: &mut Templates) -> Placed {
        let name = std::mem::take(&mut spec.name).into_boxed_str();
        Placed {
            name,
            template: templates.intern(spec),
        }
    }

    /// The whole spec, as a node is sent it.
    pub fn spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            name: self.name.to_string(),
            ..WorkloadSpec::clone(&self.template)
        }
    }
}

/// A node's desired state as the hub holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeDesired {
    /// The fleet store's identity.
    pub fleet: u64,
    /// Bumped by every change.
    pub generation: u64,
    /// Its workloads, sorted by name.
    pub workloads: Box<[Placed]>,
}

impl NodeDesired {
    /// A desired state read back from the store.
    pub fn from_wire(state: DesiredState, templates: &mut Templates) -> NodeDesired {
        NodeDesired {
            fleet: state.fleet,
            generation: state.generation,
            workloads: state
                .workloads
                .into_iter()
                .map(|w| Placed::new(w, templates))
                .collect(),
        }
    }

    /// The encoded wire form, as published and stored: one buffer per change, shared by the
    /// store's batch and the publication (the wire structure it is encoded from lives only
    /// while it is encoded, one node at a time, rather than for a whole fleet's batch).
    pub fn frame(&self) -> Bytes {
        Bytes::from(wasmfleet_proto::encode(&self.to_wire()))
    }

    /// The wire form, as published and stored.
    pub fn to_wire(&self) -> DesiredState {
        DesiredState {
            fleet: self.fleet,
            generation: self.generation,
            workloads: self.workloads.iter().map(Placed::spec).collect(),
        }
    }

    /// Memory its workloads may use in all.
    pub fn memory_bytes(&self) -> u64 {
        self.workloads
            .iter()
            .map(|w| w.template.limits.memory_bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::deployment;

    #[test]
    fn nodes_running_one_revision_share_its_template_and_the_wire_form_is_whole() {
        let d = deployment("probe", 0);
        let mut templates = Templates::default();
        let a = Placed::new(d.workload_spec(0).unwrap(), &mut templates);
        let b = Placed::new(d.workload_spec(1).unwrap(), &mut templates);
        assert!(Arc::ptr_eq(&a.template, &b.template), "one template");
        assert_eq!(&*b.name, "probe-1");
        assert!(a.template.name.is_empty());
        assert_eq!(b.spec(), d.workload_spec(1).unwrap(), "the spec as sent");

        let state = DesiredState {
            fleet: 3,
            generation: 9,
            workloads: vec![d.workload_spec(0).unwrap(), d.workload_spec(1).unwrap()],
        };
        let held = NodeDesired::from_wire(state.clone(), &mut templates);
        assert_eq!(held.to_wire(), state, "read back as it was written");
        assert_eq!(
            held.memory_bytes(),
            2 * state.workloads[0].limits.memory_bytes
        );
        assert_eq!(templates.len(), 1, "still one distinct template");
    }
}
