//! Compile once, at the hub: every module is compiled once per engine profile in the fleet
//! (not once per device), stored as a content-addressed blob, and named in the desired state
//! of each node of that profile, which fetches only the artifact over the chunked blob path.
//!
//! Three moments compile:
//! - an upload: the admission check compiles for the hub's own architecture anyway; that
//!   module is kept as the artifact of the hub's profile ([`Artifacts::keep_host_artifact`]);
//! - an apply: the module is compiled for every profile the fleet has, so a module that does
//!   not compile for one is refused at `apply` with the module and profile named
//!   ([`Artifacts::build_for_fleet`]);
//! - a node of a new profile joins: [`run`] compiles what nodes wait for (their desired state
//!   says `Compiling` meanwhile).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use wasmfleet_common::digest::sha256;
use wasmfleet_common::engine::{AdmitError, Compiler, describe};
use wasmfleet_proto::{Code, Digest, EngineProfile};

use crate::clock::now_ms;
use crate::controller::handle::Visibility;
use crate::controller::{ControllerError, ControllerHandle, FleetSnapshot};
use crate::model::{ArtifactKey, ArtifactState, profile_key};
use crate::store::BlobStore;

/// Compiles at once; more wait (compiling is CPU- and memory-heavy, and the hub serves the
/// fleet meanwhile).
pub const CONCURRENT_COMPILES: usize = 2;

/// How often the worker looks for nodes waiting for an artifact.
const POLL: Duration = Duration::from_millis(100);

/// How long the worker waits before trying again after a passing failure.
const RETRY: Duration = Duration::from_secs(5);

/// The hub's compiler and where its artifacts go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Artifacts {
    compiler: Arc<Compiler>,
    blobs: BlobStore,
    permits: Arc<Semaphore>,
}

impl Artifacts {
    /// Artifacts stored in `blobs`.
    pub fn new(blobs: BlobStore) -> Artifacts {
        Artifacts {
            compiler: Arc::new(Compiler::new()),
            blobs,
            permits: Arc::new(Semaphore::new(CONCURRENT_COMPILES)),
        }
    }

    /// Compiles `module` (held in the blob store) for `profile` and stores the artifact. An
    /// `Err` is a passing trouble of the hub's (its disk, a missing blob): nothing is decided,
    /// and the node keeps waiting while the worker tries again.
    pub async fn build(
        &self,
        module: Digest,
        profile: &EngineProfile,
    ) -> Result<ArtifactState, String> {
        if let Err(reason) = self.compiler.fits(profile) {
            return Ok(ArtifactState::Unavailable { reason });
        }
        let _permit = self.permits.acquire().await;
        let (this, profile) = (self.clone(), profile.clone());
        let built = tokio::task::spawn_blocking(move || {
            let wasm = match this.blobs.read_all(&module) {
                Ok(Some(wasm)) => wasm,
                Ok(None) => return Err(format!("module {module} is not in the hub's blob store")),
                Err(e) => return Err(e.to_string()),
            };
            match this.compiler.compile(&profile, &wasm) {
                Ok(artifact) => this.store(&artifact),
                Err(AdmitError::Invalid(reason)) => Ok(ArtifactState::Failed { reason }),
                Err(e) => Ok(ArtifactState::Unavailable {
                    reason: e.to_string(),
                }),
            }
        })
        .await;
        built.unwrap_or_else(|e| Err(format!("compiler task failed: {e}")))
    }

    /// Stores artifact bytes as a blob. Blocking.
    fn store(&self, artifact: &[u8]) -> Result<ArtifactState, String> {
        let digest = sha256(artifact);
        self.blobs
            .put(&digest, artifact, |_| Ok(()))
            .map_err(|e| format!("cannot store the artifact: {e}"))?;
        Ok(ArtifactState::Ready {
            digest: digest.to_hex(),
            size: artifact.len() as u64,
        })
    }

    /// Keeps the module the upload check compiled (for the hub's own architecture, at its
    /// baseline) as the artifact of the hub's profile. Blocking. `None` if it could not be
    /// stored (the worker compiles it again when a node needs it).
    pub fn keep_host_artifact(
        &self,
        module: Digest,
        serialized: &[u8],
    ) -> Option<(ArtifactKey, ArtifactState)> {
        let key = (
            module,
            profile_key(&wasmfleet_common::engine::host_profile(false)),
        );
        match self.store(serialized) {
            Ok(state) => Some((key, state)),
            Err(error) => {
                tracing::warn!(%error, "cannot keep the host artifact");
                None
            }
        }
    }

    /// Compiles `module` for every profile of the fleet that has no artifact of it yet.
    /// Returns every outcome (to record) and the first profile it does not compile for.
    pub async fn build_for_fleet(
        &self,
        snapshot: &FleetSnapshot,
        module: Digest,
    ) -> (Vec<(ArtifactKey, ArtifactState)>, Option<String>) {
        let mut profiles: BTreeMap<String, &EngineProfile> = BTreeMap::new();
        for n in snapshot.nodes.values() {
            profiles.insert(profile_key(&n.hello.engine), &n.hello.engine);
        }
        let mut out = Vec::new();
        let mut refusal = None;
        for (key, profile) in profiles {
            let key = (module, key);
            if snapshot.artifacts.contains_key(&key) {
                continue;
            }
            let state = match self.build(module, profile).await {
                Ok(state) => state,
                Err(error) => {
                    // Nodes of this profile wait (Compiling); the worker tries again.
                    tracing::warn!(%error, profile = %key.1, "cannot compile now");
                    continue;
                }
            };
            if let ArtifactState::Failed { reason } = &state {
                refusal.get_or_insert_with(|| {
                    format!(
                        "spec.module: module sha256:{} does not compile for the engine of the fleet's {} nodes: {reason}",
                        module.short(),
                        describe(profile)
                    )
                });
            }
            out.push((key, state));
        }
        (out, refusal)
    }
}

/// What nodes wait for: every (module, profile) some desired state marks `Compiling`.
pub fn wanted(snapshot: &FleetSnapshot) -> BTreeMap<ArtifactKey, (Digest, EngineProfile)> {
    let mut out = BTreeMap::new();
    for (node, state) in snapshot.desired.iter() {
        let Some(n) = snapshot.nodes.get(node) else {
            continue;
        };
        for w in state.workloads.iter().map(|w| &w.template) {
            if w.code != Code::Compiling {
                continue;
            }
            let key = (w.module.digest, profile_key(&n.hello.engine));
            if !snapshot.artifacts.contains_key(&key) {
                out.insert(key, (w.module.digest, n.hello.engine.clone()));
            }
        }
    }
    out
}

/// Compiles what nodes wait for, until shutdown.
pub async fn run(
    artifacts: Artifacts,
    controller: ControllerHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = u64::MAX;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let snapshot = controller.snapshot();
        let retry_due = retry_at.is_some_and(|at| tokio::time::Instant::now() >= at);
        if snapshot.version == seen && !retry_due {
            continue;
        }
        seen = snapshot.version;
        retry_at = None;
        for (key, (module, profile)) in wanted(&snapshot) {
            let state = match artifacts.build(module, &profile).await {
                Ok(state) => state,
                Err(error) => {
                    tracing::warn!(%error, profile = %key.1, "cannot compile now; will retry");
                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                    continue;
                }
            };
            tracing::info!(module = %module.short(), profile = %key.1, ?state, "compiled for a node's engine");
            let recorded = controller
                .change(Visibility::Now, move |c| {
                    let publish = c.record_artifacts(vec![(key, state)], now_ms())?;
                    Ok::<_, ControllerError>(((), publish))
                })
                .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "cannot record an artifact");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeDesired, NodeRecord, Placed, Templates};

    #[test]
    fn nodes_waiting_for_code_are_wanted_once_per_profile() {
        let mut snap = FleetSnapshot::default();
        let mut templates = Templates::default();
        let mut spec = |name: &str, code: Code| {
            let mut s = crate::scheduler::tests::deployment("d", 1)
                .workload_spec(0)
                .unwrap();
            s.name = name.into();
            s.code = code;
            Placed::new(s, &mut templates)
        };
        for (node, target) in [("a", "x86"), ("b", "x86"), ("c", "arm")] {
            let mut rec: NodeRecord = crate::scheduler::tests::node(node, true, 1 << 30, 4);
            Arc::make_mut(&mut rec.hello).engine.target = target.into();
            Arc::make_mut(&mut snap.nodes).insert(node.into(), Arc::new(rec));
            Arc::make_mut(&mut snap.desired).insert(
                node.into(),
                Arc::new(NodeDesired {
                    fleet: 1,
                    generation: 1,
                    workloads: Box::new([spec(&format!("{node}-w"), Code::Compiling)]),
                }),
            );
        }
        Arc::make_mut(Arc::make_mut(&mut snap.desired).get_mut("c").unwrap()).workloads[0] =
            spec("c-w", Code::Source);
        let w = wanted(&snap);
        assert_eq!(w.len(), 1, "a and b share a profile; c waits for nothing");
        assert_eq!(w.values().next().unwrap().1.target, "x86");
    }

    /// A module that does not compile for one of the fleet's engines is refused, naming the
    /// module and the engine (here: bytes that reached the blob store without the upload
    /// check, as from an older hub).
    #[tokio::test]
    async fn a_module_that_does_not_compile_for_a_profile_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let bad = b"\0asm\x01\0\0\0\x01\xff".to_vec();
        let module = sha256(&bad);
        blobs.put(&module, &bad, |_| Ok(())).unwrap();
        let mut snap = FleetSnapshot::default();
        let mut rec: NodeRecord = crate::scheduler::tests::node("pi", true, 1 << 30, 4);
        Arc::make_mut(&mut rec.hello).engine.target = "aarch64-unknown-linux-gnu".into();
        Arc::make_mut(&mut snap.nodes).insert("pi".into(), Arc::new(rec));
        let (built, refusal) = Artifacts::new(blobs).build_for_fleet(&snap, module).await;
        let refusal = refusal.expect("refused");
        assert!(
            refusal.starts_with("spec.module: module sha256:"),
            "{refusal}"
        );
        assert!(
            refusal.contains("aarch64-unknown-linux-gnu/wasmtime-50.0.1"),
            "{refusal}"
        );
        assert!(
            matches!(built[0].1, ArtifactState::Failed { .. }),
            "{built:?}"
        );
    }
}
