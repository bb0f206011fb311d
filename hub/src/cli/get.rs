//! `wasmfleet get` and `wasmfleet describe`.

use anyhow::Result;
use serde::Serialize;

use super::client::{Client, path, with_query};
use super::sanitize::visible;
use super::table::{age, render};
use crate::api::types::{DeploymentView, Event, NodeView, WorkloadView};
use crate::clock::now_ms;
use crate::model::quantity::format_bytes;

/// Output format of read commands (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Output {
    /// Human table.
    #[default]
    Table,
    /// Human table with more columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The kinds `get`, `describe` and `delete` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nodes.
    Node,
    /// Deployments.
    Deployment,
    /// Workload instances.
    Workload,
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "node" | "nodes" | "no" => Kind::Node,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "workload" | "workloads" | "wl" => Kind::Workload,
            other => {
                return Err(format!(
                    "unknown resource type {other:?}: use nodes, deployments or workloads"
                ));
            }
        })
    }
}

fn machine<T: Serialize>(items: &T, output: Output) -> Result<Option<String>> {
    Ok(match output {
        Output::Json => Some(serde_json::to_string_pretty(items)? + "\n"),
        Output::Yaml => Some(yaml_serde::to_string(items)?),
        Output::Table | Output::Wide => None,
    })
}

/// kubectl's answer to an empty list.
const NONE_FOUND: &str = "No resources found.\n";

/// Renders `get KIND [NAME]`.
pub async fn get(
    client: &Client,
    kind: Kind,
    name: Option<&str>,
    output: Output,
) -> Result<String> {
    let now = now_ms();
    let wide = output == Output::Wide;
    match kind {
        Kind::Node => {
            let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
            list(
                nodes,
                name,
                |n| &n.name,
                "node",
                output,
                |l| nodes_table(l, wide, now),
            )
        }
        Kind::Deployment => {
            let deps: Vec<DeploymentView> = client.get("/v1/deployments").await?;
            list(
                deps,
                name,
                |d| &d.name,
                "deployment",
                output,
                |l| deployments_table(l, wide, now),
            )
        }
        Kind::Workload => {
            let wls: Vec<WorkloadView> = client.get("/v1/workloads").await?;
            list(
                wls,
                name,
                |w| &w.name,
                "workload",
                output,
                |l| workloads_table(l, wide),
            )
        }
    }
}

/// One listing: narrowed to `name` if given, then JSON/YAML, kubectl's empty answer, or a
/// table.
fn list<T: Serialize>(
    mut items: Vec<T>,
    name: Option<&str>,
    key: impl Fn(&T) -> &String,
    what: &str,
    output: Output,
    table: impl Fn(&[T]) -> String,
) -> Result<String> {
    filter_one(&mut items, name, key, what)?;
    if let Some(text) = machine(&items, output)? {
        return Ok(text);
    }
    if items.is_empty() {
        return Ok(NONE_FOUND.into());
    }
    Ok(table(&items))
}

fn filter_one<T>(
    items: &mut Vec<T>,
    name: Option<&str>,
    key: impl Fn(&T) -> &String,
    what: &str,
) -> Result<()> {
    if let Some(name) = name {
        items.retain(|i| key(i) == name);
        if items.is_empty() {
            anyhow::bail!("{what} {name:?} not found");
        }
    }
    Ok(())
}

fn nodes_table(nodes: &[NodeView], wide: bool, now: u64) -> String {
    let mut header = vec![
        "NAME",
        "STATUS",
        "CLASS",
        "WORKLOADS",
        "MEMORY",
        "AGE",
        "LAST SEEN",
        "LABELS",
    ];
    if wide {
        header.extend(["VERSION", "GENERATION", "ENGINE", "DEVICES"]);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let labels: Vec<String> = n
                .labels
                .iter()
                .map(|(k, v)| visible(&format!("{k}={v}")).into_owned())
                .collect();
            let mut row = vec![
                n.name.clone(),
                n.status.clone(),
                n.device_class.to_lowercase(),
                format!("{}/{}", n.workloads, n.max_workloads),
                format!(
                    "{}/{}",
                    format_bytes(n.allocated_memory_bytes),
                    format_bytes(n.memory_bytes)
                ),
                age(node_created(n), now),
                n.last_seen_ms
                    .map_or_else(|| "<unknown>".into(), |t| format!("{} ago", age(t, now))),
                if labels.is_empty() {
                    "<none>".into()
                } else {
                    labels.join(",")
                },
            ];
            if wide {
                row.extend([
                    visible(&n.agent_version).into_owned(),
                    format!("{}/{}", n.observed_generation, n.desired_generation),
                    format!(
                        "{}{}",
                        visible(&n.engine),
                        if n.compiler { "+compiler" } else { "" }
                    ),
                    if n.devices.is_empty() {
                        "<none>".into()
                    } else {
                        visible(&n.devices.join(",")).into_owned()
                    },
                ]);
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// When the hub first heard of `n` (hubs before `created_ms` existed: when its status changed).
fn node_created(n: &NodeView) -> u64 {
    if n.created_ms == 0 {
        n.since_ms
    } else {
        n.created_ms
    }
}

fn deployments_table(deps: &[DeploymentView], wide: bool, now: u64) -> String {
    let mut header = vec!["NAME", "READY", "SCHEDULED", "REVISION", "AGE"];
    if wide {
        header.extend(["MODULE", "MEMORY", "RESTART", "PLACEMENT"]);
    }
    let rows: Vec<Vec<String>> = deps
        .iter()
        .map(|d| {
            let mut row = vec![
                d.name.clone(),
                // Every-node: desired is the number of matching nodes (an older hub
                // sends no desiredReplicas, and only replica counts).
                format!(
                    "{}/{}",
                    d.ready_replicas,
                    d.desired_replicas.max(d.spec.replicas)
                ),
                d.scheduled_replicas.to_string(),
                d.revision.to_string(),
                age(d.created_ms, now),
            ];
            if wide {
                row.extend([
                    format!("sha256:{}", &d.spec.module[..12.min(d.spec.module.len())]),
                    format_bytes(d.spec.memory_bytes),
                    format!("{:?}", d.spec.restart_policy),
                    d.spec.placement.as_str().into(),
                ]);
            }
            row
        })
        .collect();
    render(&header, &rows)
}

fn workloads_table(wls: &[WorkloadView], wide: bool) -> String {
    let mut header = vec!["NAME", "DEPLOYMENT", "NODE", "PHASE", "RESTARTS"];
    if wide {
        header.extend(["REVISION", "EXIT", "MESSAGE"]);
    }
    let rows: Vec<Vec<String>> = wls
        .iter()
        .map(|w| {
            let mut row = vec![
                w.name.clone(),
                w.deployment.clone(),
                w.node.clone().unwrap_or_else(|| "<none>".into()),
                w.phase.clone(),
                w.restarts.to_string(),
            ];
            if wide {
                row.extend([
                    w.revision.to_string(),
                    w.exit_code.map_or("-".into(), |c| c.to_string()),
                    w.message.clone(),
                ]);
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// Renders `describe KIND NAME`.
pub async fn describe(client: &Client, kind: Kind, name: &str) -> Result<String> {
    let now = now_ms();
    let mut out = String::new();
    let events: Vec<Event> = match kind {
        Kind::Deployment => {
            let d: DeploymentView = client.get(&path(&["v1", "deployments", name])).await?;
            let s = &d.spec;
            out += &format!("Name:            {}\n", visible(&d.name));
            out += &format!("Generation:      {}\n", d.generation);
            out += &format!("Revision:        {}\n", d.revision);
            out += &format!(
                "Module:          sha256:{} ({} bytes)\n",
                s.module, s.module_size
            );
            out += &format!(
                "Replicas:        {} desired | {} scheduled | {} running{}\n",
                d.desired_replicas.max(s.replicas),
                d.scheduled_replicas,
                d.ready_replicas,
                match s.placement {
                    crate::model::deployment::PlacementPolicy::EveryNode =>
                        " (every matching node)",
                    crate::model::deployment::PlacementPolicy::Replicas => "",
                }
            );
            out += &format!(
                "Rollout:         waves [{}], healthyFor {}s, maxUnavailable {}, failureThreshold {}, progressDeadline {}s\n",
                s.rollout
                    .waves
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                s.rollout.healthy_for_ms / 1000,
                s.rollout.max_unavailable,
                s.rollout.failure_threshold,
                s.rollout.progress_deadline_ms / 1000
            );
            out += &format!(
                "Args:            {}\n",
                if s.args.is_empty() {
                    "<none>".into()
                } else {
                    visible(&s.args.join(" ")).into_owned()
                }
            );
            out += "Env:\n";
            for (k, v) in &s.env {
                out += &format!("  {}={}\n", visible(k), visible(v));
            }
            out += &format!("Memory limit:    {}\n", format_bytes(s.memory_bytes));
            out += &format!(
                "CPU limit:       {}\n",
                s.cpu_millis.map_or(
                    "<none>".into(),
                    wasmfleet_common::quantity::format_cpu_millis
                )
            );
            out += &format!(
                "Max run time:    {}\n",
                s.max_run_ms
                    .map_or("<none>".into(), |ms| format!("{}s", ms as f64 / 1000.0))
            );
            out += &format!("Restart policy:  {:?}\n", s.restart_policy);
            out += &format!("Namespace:       {}\n", visible(&s.namespace));
            out += "Config:\n";
            for (k, v) in &s.config {
                out += &format!("  {}={}\n", visible(k), visible(v));
            }
            out += &capabilities_text(&s.capabilities);
            let wls: Vec<WorkloadView> = client
                .get(&with_query("/v1/workloads", &[("deployment", name)]))
                .await?;
            out += "Workloads:\n";
            out += &indent(&workloads_table(&wls, true));
            client
                .get(&with_query(
                    &path(&["v1", "deployments", name, "events"]),
                    &[("limit", "30")],
                ))
                .await?
        }
        Kind::Node => {
            let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
            let n = nodes
                .into_iter()
                .find(|n| n.name == name)
                .ok_or_else(|| anyhow::anyhow!("node {name:?} not found"))?;
            out += &format!("Name:            {}\n", n.name);
            out += &format!(
                "Status:          {} (for {})\n",
                n.status,
                age(n.since_ms, now)
            );
            out += &format!("Age:             {}\n", age(node_created(&n), now));
            out += &format!(
                "Last seen:       {}\n",
                n.last_seen_ms
                    .map_or_else(|| "<unknown>".into(), |t| format!("{} ago", age(t, now)))
            );
            out += &format!("Scheduling:      {}\n", n.scheduling);
            out += &format!("Agent version:   {}\n", visible(&n.agent_version));
            out += &format!("Device class:    {}\n", n.device_class);
            out += &format!(
                "Engine:          {}{}\n",
                visible(&n.engine),
                if n.compiler {
                    " (compiles source modules)"
                } else {
                    ""
                }
            );
            out += &format!(
                "Devices:         {}\n",
                match n.devices.is_empty() {
                    true => "<none>".to_string(),
                    false => visible(&n.devices.join(" ")).into_owned(),
                }
            );
            out += &format!(
                "Capacity:        {} memory, {} workloads\n",
                format_bytes(n.memory_bytes),
                n.max_workloads
            );
            out += &format!(
                "Allocated:       {} memory, {} workloads\n",
                format_bytes(n.allocated_memory_bytes),
                n.workloads
            );
            out += &format!(
                "Generation:      desired {}, observed {}\n",
                n.desired_generation, n.observed_generation
            );
            out += "Labels:\n";
            for (k, v) in &n.labels {
                out += &format!("  {}={}\n", visible(k), visible(v));
            }
            let wls: Vec<WorkloadView> = client.get("/v1/workloads").await?;
            let mine: Vec<WorkloadView> = wls
                .into_iter()
                .filter(|w| w.node.as_deref() == Some(name))
                .collect();
            out += "Workloads:\n";
            out += &indent(&workloads_table(&mine, false));
            client
                .get(&with_query(
                    "/v1/events",
                    &[("kind", "Node"), ("name", name), ("limit", "30")],
                ))
                .await?
        }
        Kind::Workload => {
            let wls: Vec<WorkloadView> = client.get("/v1/workloads").await?;
            let w = wls
                .into_iter()
                .find(|w| w.name == name)
                .ok_or_else(|| anyhow::anyhow!("workload {name:?} not found"))?;
            out += &format!("Name:            {}\n", w.name);
            out += &format!("Deployment:      {}\n", w.deployment);
            out += &format!(
                "Node:            {}\n",
                w.node.as_deref().unwrap_or("<none>")
            );
            out += &format!("Phase:           {}\n", w.phase);
            out += &format!("Restarts:        {}\n", w.restarts);
            out += &format!(
                "Exit code:       {}\n",
                w.exit_code.map_or("-".into(), |c| c.to_string())
            );
            out += &format!(
                "Message:         {}\n",
                if w.message.is_empty() {
                    "<none>".into()
                } else {
                    visible(&w.message)
                }
            );
            client
                .get(&with_query(
                    "/v1/events",
                    &[("kind", "Workload"), ("name", name), ("limit", "30")],
                ))
                .await?
        }
    };
    out += "Events:\n";
    if events.is_empty() {
        out += "  <none>\n";
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    age(e.ts_ms, now),
                    e.reason.clone(),
                    format!("{}/{}", e.kind, e.object),
                    e.message.clone(),
                ]
            })
            .collect();
        out += &indent(&render(&["AGE", "REASON", "OBJECT", "MESSAGE"], &rows));
    }
    Ok(out)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The `Capabilities:` block of `describe deployment`, one line per granted capability.
fn capabilities_text(c: &crate::model::capabilities::CapabilitiesSpec) -> String {
    let list = |v: &[String]| visible(&v.join(" ")).into_owned();
    let mut lines = Vec::new();
    if !c.i2c.is_empty() {
        lines.push(format!("  i2c:        {}", list(&c.i2c)));
    }
    if !c.spi.is_empty() {
        lines.push(format!("  spi:        {}", list(&c.spi)));
    }
    if !c.gpio.is_empty() {
        let pins: Vec<String> = c.gpio.iter().map(u32::to_string).collect();
        lines.push(format!("  gpio:       {}", pins.join(" ")));
    }
    if !c.publish.is_empty() {
        lines.push(format!("  publish:    {}", list(&c.publish)));
    }
    if !c.subscribe.is_empty() {
        lines.push(format!("  subscribe:  {}", list(&c.subscribe)));
    }
    if c.kv_bytes > 0 {
        lines.push(format!("  kv:         {}", format_bytes(c.kv_bytes)));
    }
    match lines.is_empty() {
        true => "Capabilities:    <none>\n".into(),
        false => format!("Capabilities:\n{}\n", lines.join("\n")),
    }
}
