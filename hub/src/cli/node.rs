//! `wasmfleet cordon|uncordon|drain NODE`, as in kubectl.

use std::time::{Duration, Instant};

use super::client::{Client, path};
use crate::api::types::{NodeView, Scheduling, SchedulingChange};

/// Sets `node`'s scheduling state and prints what kubectl prints.
pub async fn set(
    client: &Client,
    node: &str,
    scheduling: Scheduling,
) -> anyhow::Result<Vec<String>> {
    let answer: SchedulingChange = client
        .put_json(
            &path(&["v1", "nodes", node, "scheduling"]),
            &SchedulingChange {
                scheduling,
                moved: vec![],
            },
        )
        .await?;
    let verb = match scheduling {
        Scheduling::Enabled => "uncordoned",
        Scheduling::Cordoned => "cordoned",
        Scheduling::Drained => "drained",
    };
    if scheduling == Scheduling::Drained {
        for w in &answer.moved {
            println!("evicting workload/{w}");
        }
    }
    println!("node/{node} {verb}");
    Ok(answer.moved)
}

/// After a drain: waits until the node acted on the desired state without its replicas (or is
/// NotReady: it runs them no more once it is back), so a user may switch it off.
pub async fn wait_drained(client: &Client, node: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
        let n = nodes
            .iter()
            .find(|n| n.name == node)
            .ok_or_else(|| anyhow::anyhow!("node {node:?} not found"))?;
        if !n.status.starts_with("Ready") || n.observed_generation >= n.desired_generation {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "node {node} has not stopped its replicas within {}s (it acted on generation {} of {}); it stays drained",
                timeout.as_secs(),
                n.observed_generation,
                n.desired_generation
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
