//! `wasmfleet apply -f` and `wasmfleet run`: upload the module by digest, then declare the
//! deployment.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use wasmfleet_common::digest::sha256;
use wasmfleet_common::engine::check_header;

use super::client::{Client, path};
use crate::api::types::{ApplyRequest, ApplyResponse, DeploymentSpec};
use crate::model::deployment::RestartPolicyName;
use crate::model::manifest::{self, DeploymentManifest};

/// Applies every document of a manifest file. All documents are parsed and their modules
/// checked before anything is sent, so a bad file changes nothing.
pub async fn apply_file(client: &Client, path: &Path) -> Result<Vec<ApplyResponse>> {
    let docs = manifest::load(path)?;
    let mut prepared = Vec::new();
    for doc in &docs {
        prepared.push(prepare(doc)?);
    }
    let mut out = Vec::new();
    for (doc, (bytes, spec)) in docs.iter().zip(prepared) {
        out.push(submit(client, &doc.name, bytes, spec).await?);
    }
    Ok(out)
}

/// Reads a deployment's module, checks that it is a core WebAssembly module at all (the hub
/// checks the rest at upload, with the agents' own engine), and builds its spec.
pub fn prepare(doc: &DeploymentManifest) -> Result<(Vec<u8>, DeploymentSpec)> {
    let path = &doc.module_path;
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: spec.module: cannot read {}", doc.name, path.display()))?;
    check_header(&bytes)
        .with_context(|| format!("{}: spec.module {}", doc.name, path.display()))?;
    let spec = DeploymentSpec {
        module: sha256(&bytes).to_hex(),
        module_size: bytes.len() as u64,
        replicas: doc.replicas,
        args: doc.args.clone(),
        env: doc.env.clone(),
        memory_bytes: doc.memory_bytes,
        cpu_millis: doc.cpu_millis,
        max_run_ms: doc.max_run_ms,
        restart_policy: doc.restart_policy,
        namespace: doc.namespace.clone(),
        config: doc.config.clone(),
        capabilities: doc.capabilities.clone(),
        node_selector: doc.node_selector.clone(),
        node_affinity: doc.node_affinity.clone(),
        placement: doc.placement,
        rollout: doc.rollout.clone(),
    };
    spec.validate().with_context(|| doc.name.clone())?;
    Ok((bytes, spec))
}

/// Uploads the module if the hub lacks it, then applies the spec.
pub async fn submit(
    client: &Client,
    name: &str,
    bytes: Vec<u8>,
    spec: DeploymentSpec,
) -> Result<ApplyResponse> {
    let blob_path = path(&["v1", "blobs", &spec.module]);
    if !client.exists(&blob_path).await? {
        client
            .put_bytes(&blob_path, bytes)
            .await
            .with_context(|| format!("uploading the module of {name}"))?;
    }
    let resp = client
        .put_json(&path(&["v1", "deployments", name]), &ApplyRequest { spec })
        .await
        .with_context(|| format!("applying deployment {name}"))?;
    Ok(resp)
}

/// Arguments of `wasmfleet run`, already parsed.
#[derive(Debug, Clone)]
pub struct RunArgs<'a> {
    /// Deployment name.
    pub name: &'a str,
    /// Module file.
    pub module: &'a Path,
    /// Replica count.
    pub replicas: u32,
    /// `K=V` pairs.
    pub env: &'a [String],
    /// Memory limit text (e.g. 64Mi).
    pub memory: &'a str,
    /// CPU limit text (e.g. 200m).
    pub cpu: Option<&'a str>,
    /// Longest run (e.g. 30s).
    pub max_run_time: Option<&'a str>,
    /// Restart policy.
    pub restart: RestartPolicyName,
    /// Module arguments.
    pub args: &'a [String],
}

/// `wasmfleet run NAME FILE.wasm`: an imperative apply, like `kubectl run`.
pub async fn run(client: &Client, a: RunArgs<'_>) -> Result<ApplyResponse> {
    crate::model::deployment::validate_name(a.name)?;
    let mut env = BTreeMap::new();
    for pair in a.env {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--env {pair:?}: expected KEY=VALUE");
        };
        env.insert(k.to_owned(), v.to_owned());
    }
    let doc = DeploymentManifest {
        name: a.name.to_owned(),
        module_path: a.module.to_owned(),
        replicas: a.replicas,
        args: a.args.to_vec(),
        env,
        memory_bytes: crate::model::quantity::parse_bytes(a.memory)
            .map_err(|e| anyhow::anyhow!("--memory: {e}"))?,
        cpu_millis: a
            .cpu
            .map(crate::model::quantity::parse_cpu_millis)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--cpu: {e}"))?,
        max_run_ms: a
            .max_run_time
            .map(crate::model::quantity::parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--max-run-time: {e}"))?
            .map(|d| d.as_millis() as u64),
        restart_policy: a.restart,
        namespace: crate::model::capabilities::DEFAULT_NAMESPACE.into(),
        config: BTreeMap::new(),
        capabilities: Default::default(),
        node_selector: BTreeMap::new(),
        node_affinity: Vec::new(),
        placement: Default::default(),
        rollout: Default::default(),
    };
    let (bytes, spec) = prepare(&doc)?;
    submit(client, a.name, bytes, spec).await
}
