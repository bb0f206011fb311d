//! Which desired workloads this node takes on, and which code blob each one runs.
//!
//! Pure, like [`crate::reconcile`]. The agent enforces the capacity it announced even when a
//! hub asks for more (a misconfigured hub, a second hub, a hand-written desired state), as a
//! kubelet refuses pods that do not fit: workloads are admitted in name order until
//! `--max-workloads` or `--memory` is used up; the rest are refused with the reason.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::format_bytes;
use wasmfleet_proto::{Code, DesiredState, ModuleRef, WorkloadSpec};

/// What this node offers and can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOffer {
    /// Most instances it runs (`--max-workloads`).
    pub max_workloads: u32,
    /// Memory it offers to workloads, bytes (`--memory`).
    pub memory_bytes: u64,
    /// Whether it can compile source modules (built with feature `compiler`).
    pub compiler: bool,
}

/// The decision for one desired workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run it from this blob (the precompiled artifact, or the source module to compile).
    Run(ModuleRef),
    /// Admitted, but the hub is still compiling its code: Pending with this message.
    Wait(String),
    /// Not run here: Failed with this message.
    Refuse(String),
}

impl Verdict {
    /// The blob to run, if it runs.
    pub fn blob(&self) -> Option<&ModuleRef> {
        match self {
            Verdict::Run(blob) => Some(blob),
            _ => None,
        }
    }
}

/// The blob `spec` runs from on a node that does (or does not) have a compiler.
pub fn code_of(spec: &WorkloadSpec, compiler: bool) -> Verdict {
    match spec.code {
        Code::Precompiled(artifact) => Verdict::Run(artifact),
        Code::Source if compiler => Verdict::Run(spec.module),
        Code::Source => Verdict::Refuse(format!(
            "the hub sent source module {} without a precompiled artifact for this node's engine, \
             and this agent has no compiler (build edge-agent with feature `compiler`, or run a \
             hub of the same wasmtime version: see the ENGINE column of `wasmfleet get nodes -o wide`)",
            spec.module.digest.short()
        )),
        Code::Compiling => Verdict::Wait(format!(
            "waiting for the hub to compile module {} for this node's engine",
            spec.module.digest.short()
        )),
    }
}

/// One verdict per desired workload, by name.
pub fn admit(desired: &DesiredState, offer: &NodeOffer) -> BTreeMap<String, Verdict> {
    let mut specs: Vec<&WorkloadSpec> = desired.workloads.iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let (mut count, mut memory) = (0u32, 0u64);
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut verdict = code_of(spec, offer.compiler);
        if !matches!(verdict, Verdict::Refuse(_)) {
            if count >= offer.max_workloads {
                verdict = Verdict::Refuse(format!(
                    "refused by the node: it runs at most {} workloads (--max-workloads)",
                    offer.max_workloads
                ));
            } else if memory.saturating_add(spec.limits.memory_bytes) > offer.memory_bytes {
                verdict = Verdict::Refuse(format!(
                    "refused by the node: its memory limit {} does not fit in the {} this node \
                     offers (--memory), of which {} is taken",
                    format_bytes(spec.limits.memory_bytes),
                    format_bytes(offer.memory_bytes),
                    format_bytes(memory)
                ));
            } else {
                count += 1;
                memory += spec.limits.memory_bytes;
            }
        }
        out.insert(spec.name.clone(), verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use wasmfleet_proto::{Digest, Limits, RestartPolicy};

    fn spec(name: &str, memory_bytes: u64, code: Code) -> WorkloadSpec {
        WorkloadSpec {
            name: name.into(),
            deployment: "d".into(),
            revision: 1,
            module: ModuleRef {
                digest: Digest([1; 32]),
                size: 10,
            },
            args: vec![],
            env: vec![],
            limits: Limits {
                memory_bytes,
                cpu_millis: None,
                max_run_ms: None,
            },
            restart: RestartPolicy::Always,
            code,
            namespace: "default".into(),
            config: vec![],
            capabilities: Default::default(),
        }
    }

    fn art() -> Code {
        Code::Precompiled(ModuleRef {
            digest: Digest([2; 32]),
            size: 20,
        })
    }

    const OFFER: NodeOffer = NodeOffer {
        max_workloads: 2,
        memory_bytes: 100 << 20,
        compiler: false,
    };

    #[test]
    fn admits_in_name_order_until_the_offer_is_used_up() {
        let d = DesiredState {
            fleet: 1,
            generation: 1,
            workloads: vec![
                spec("c", 1 << 20, art()),
                spec("a", 60 << 20, art()),
                spec("b", 60 << 20, art()),
                spec("d", 1 << 20, art()),
            ],
        };
        let v = admit(&d, &OFFER);
        assert_eq!(v["a"].blob().unwrap().digest, Digest([2; 32]));
        let Verdict::Refuse(why) = &v["b"] else {
            panic!("{:?}", v["b"])
        };
        assert!(
            why.contains("memory limit 60Mi") && why.contains("100Mi"),
            "{why}"
        );
        assert!(v["c"].blob().is_some(), "small enough to fit beside a");
        let Verdict::Refuse(why) = &v["d"] else {
            panic!("{:?}", v["d"])
        };
        assert!(why.contains("at most 2 workloads"), "{why}");
    }

    #[test]
    fn source_code_needs_a_compiler_and_compiling_code_waits() {
        let d = DesiredState {
            fleet: 1,
            generation: 1,
            workloads: vec![spec("a", 1, Code::Source), spec("b", 1, Code::Compiling)],
        };
        let v = admit(&d, &OFFER);
        let Verdict::Refuse(why) = &v["a"] else {
            panic!("{:?}", v["a"])
        };
        assert!(why.contains("no compiler"), "{why}");
        assert!(matches!(&v["b"], Verdict::Wait(m) if m.contains("compile")));
        let with = NodeOffer {
            compiler: true,
            ..OFFER
        };
        assert_eq!(
            admit(&d, &with)["a"],
            Verdict::Run(d.workloads[0].module),
            "a compiler runs the source module"
        );
    }
}
