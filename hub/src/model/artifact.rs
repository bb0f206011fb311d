//! Precompiled artifacts: each module compiled once per engine profile in the fleet.
//!
//! Pure data and the pure choice of [`Code`] for a workload on a node; compiling and storing
//! artifacts is the `artifacts` driver's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmfleet_proto::{Code, Digest, EngineProfile, ModuleRef};

/// Identifies a profile for artifacts: target, wasmtime version and settings fingerprint (CPU
/// features and whether the node compiles are not part of it: the hub compiles for the
/// target's baseline).
pub fn profile_key(p: &EngineProfile) -> String {
    format!("{}/wasmtime-{}/{:016x}", p.target, p.wasmtime, p.settings)
}

/// (module digest, [`profile_key`]).
pub type ArtifactKey = (Digest, String);

/// What the hub has for one module and profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ArtifactState {
    /// Compiled and stored as a blob.
    Ready {
        /// SHA-256 of the artifact, hex.
        digest: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The hub cannot compile for this profile (another wasmtime version, other settings, an
    /// architecture it has no backend for): nodes get the source module.
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The module does not compile for this profile.
    Failed {
        /// The compiler's error.
        reason: String,
    },
}

impl ArtifactState {
    /// The artifact blob, if ready.
    pub fn blob(&self) -> Option<ModuleRef> {
        match self {
            ArtifactState::Ready { digest, size } => Some(ModuleRef {
                digest: digest.parse().ok()?,
                size: *size,
            }),
            _ => None,
        }
    }
}

/// The code a node of `profile` runs `module` from: the artifact if ready; the source if the
/// hub cannot make one; [`Code::Compiling`] until the hub has tried.
pub fn code_for(
    artifacts: &BTreeMap<ArtifactKey, ArtifactState>,
    module: &Digest,
    profile: &EngineProfile,
) -> Code {
    match artifacts.get(&(*module, profile_key(profile))) {
        Some(state) => match state.blob() {
            Some(blob) => Code::Precompiled(blob),
            None => Code::Source,
        },
        None => Code::Compiling,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(target: &str) -> EngineProfile {
        EngineProfile {
            target: target.into(),
            cpu_features: vec!["has_avx2".into()],
            wasmtime: "50.0.1".into(),
            settings: 0xfeed,
            compiler: false,
        }
    }

    #[test]
    fn one_artifact_per_profile_whatever_the_cpu_features() {
        let (m, x86, arm) = (Digest([1; 32]), profile("x86_64"), profile("aarch64"));
        let mut plain = x86.clone();
        plain.cpu_features.clear();
        assert_eq!(profile_key(&x86), profile_key(&plain));
        let artifact = ModuleRef {
            digest: Digest([9; 32]),
            size: 42,
        };
        let arts = BTreeMap::from([
            (
                (m, profile_key(&x86)),
                ArtifactState::Ready {
                    digest: artifact.digest.to_hex(),
                    size: 42,
                },
            ),
            (
                (m, profile_key(&arm)),
                ArtifactState::Unavailable {
                    reason: "no backend".into(),
                },
            ),
        ]);
        assert_eq!(code_for(&arts, &m, &plain), Code::Precompiled(artifact));
        assert_eq!(code_for(&arts, &m, &arm), Code::Source);
        assert_eq!(code_for(&arts, &Digest([2; 32]), &x86), Code::Compiling);
    }
}
