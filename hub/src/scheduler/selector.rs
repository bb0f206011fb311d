//! Which nodes a deployment may run on: its `nodeSelector`, its node-affinity expressions,
//! the microcontroller rule and its devices. Readiness, scheduling state and room are
//! checked by the caller, since they depend on whether a workload is new, kept or bound.

use crate::model::DeploymentRecord;
use crate::model::deployment::Operator;

use super::capacity::Demand;
use super::nodes::{Candidate, DEVICE_CLASS_LABEL};
use super::reasons::Fail;

/// One deployment as a pass places it: what is computed once per pass, not per node.
pub(super) struct Plan<'a> {
    pub dep: &'a DeploymentRecord,
    /// What each of its workloads takes from a node.
    pub demand: Demand,
    /// Devices its capabilities name (`i2c-1`, `gpio:17`).
    pub devices: Vec<String>,
    /// Whether it selects microcontrollers (`wasmfleet.dev/device-class: mcu` in its
    /// `nodeSelector`, or an `In` expression on that label listing `mcu`).
    pub wants_mcu: bool,
}

impl<'a> Plan<'a> {
    pub fn new(dep: &'a DeploymentRecord) -> Self {
        let spec = &dep.spec;
        let wants_mcu = spec
            .node_selector
            .get(DEVICE_CLASS_LABEL)
            .is_some_and(|v| v == "mcu")
            || spec.node_affinity.iter().any(|e| {
                e.key == DEVICE_CLASS_LABEL
                    && e.operator == Operator::In
                    && e.values.iter().any(|v| v == "mcu")
            });
        Plan {
            dep,
            demand: Demand {
                memory: spec.memory_bytes,
                // Bytes one workload adds to a desired state, measured once per pass.
                bytes: dep.wire_size(),
            },
            devices: spec.capabilities.to_wire().devices(),
            wants_mcu,
        }
    }

    /// The first reason `node` is not one this deployment may run on, in report order:
    /// selector labels (by key), expressions (in order), the microcontroller rule (an MCU
    /// runs no WASI command and has kilobytes of memory: nothing lands there unless it
    /// asks, as on a tainted node in Kubernetes), then devices.
    pub fn mismatch<'p>(&'p self, node: &Candidate<'_>) -> Option<Fail<'p>> {
        let spec = &self.dep.spec;
        for (key, value) in &spec.node_selector {
            if node.labels().get(key.as_str()) != Some(&value.as_str()) {
                return Some(Fail::MissingLabel { key, value });
            }
        }
        for e in &spec.node_affinity {
            if !e.matches(node.labels().get(e.key.as_str()).copied()) {
                return Some(Fail::Expression(e));
            }
        }
        if node.record.hello.device_class == wasmfleet_proto::DeviceClass::Mcu && !self.wants_mcu {
            return Some(Fail::Microcontroller);
        }
        let offered = &node.record.hello.devices;
        if !self.devices.iter().all(|d| offered.contains(d)) {
            let missing = self
                .devices
                .iter()
                .filter(|d| !offered.contains(d))
                .map(String::as_str)
                .collect();
            return Some(Fail::MissingDevices(missing));
        }
        None
    }
}
