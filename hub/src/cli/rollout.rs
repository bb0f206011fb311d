//! `wasmfleet rollout status|history|pause|resume|undo DEPLOYMENT`, as in kubectl.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Client, path, with_query};
use super::table::{age, render};
use crate::api::types::{RevisionView, RolloutView};
use crate::clock::now_ms;

/// Follows the rollout of `deployment` until it is Complete (Ok) or Failed (an error naming
/// the cause), printing progress: a bar on a terminal, a line per change otherwise.
pub async fn status(
    client: &Client,
    deployment: &str,
    watch: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let url = path(&["v1", "deployments", deployment, "rollout"]);
    let deadline = Instant::now() + timeout;
    let bar = (watch && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last = String::new();
    loop {
        let r: RolloutView = client.get(&url).await?;
        let line = progress_line(&r);
        if let Some(bar) = &bar {
            bar.set_length(u64::from(r.replicas.max(1)));
            bar.set_position(u64::from(r.ready.min(r.updated)));
            bar.set_message(line.clone());
        } else if line != last {
            println!("{line}");
        }
        last = line;
        match r.phase.as_str() {
            "Complete" => {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                println!(
                    "deployment {deployment:?} successfully rolled out (revision {})",
                    r.revision
                );
                return Ok(());
            }
            "Failed" => {
                if let Some(bar) = bar {
                    bar.abandon();
                }
                anyhow::bail!("rollout of deployment {deployment:?} failed: {}", r.message);
            }
            _ if !watch => return Ok(()),
            _ => {}
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {}s waiting for the rollout of {deployment:?}: {last}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// kubectl's wording, with the wave.
fn progress_line(r: &RolloutView) -> String {
    match r.phase.as_str() {
        "Paused" => format!(
            "rollout of revision {} paused in wave {}/{} ({} of {} replicas updated){}",
            r.revision,
            r.wave,
            r.waves,
            r.updated,
            r.replicas,
            if r.message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.message)
            }
        ),
        "Complete" | "Failed" => format!("revision {}: {}", r.revision, r.message),
        _ => format!(
            "Waiting for rollout of revision {} to finish: wave {}/{}, {} of {} updated replicas are available...",
            r.revision,
            r.wave,
            r.waves,
            r.ready.min(r.updated),
            r.replicas
        ),
    }
}

/// `rollout history`: revisions and their change causes, as a table.
pub async fn history(client: &Client, deployment: &str) -> anyhow::Result<String> {
    let revisions: Vec<RevisionView> = client
        .get(&path(&["v1", "deployments", deployment, "revisions"]))
        .await?;
    let now = now_ms();
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            let mut mark = Vec::new();
            if r.current {
                mark.push("current");
            }
            if r.stable {
                mark.push("stable");
            }
            vec![
                r.revision.to_string(),
                age(r.created_ms, now),
                mark.join(","),
                super::sanitize::visible(&r.cause).into_owned(),
            ]
        })
        .collect();
    Ok(format!(
        "deployment.wasmfleet.dev/{deployment}\n{}",
        render(&["REVISION", "AGE", "STATUS", "CHANGE-CAUSE"], &rows)
    ))
}

/// `rollout pause|resume|undo`: asks the hub and says what it did.
pub async fn act(
    client: &Client,
    deployment: &str,
    action: &str,
    to_revision: Option<u64>,
) -> anyhow::Result<String> {
    let base = path(&["v1", "deployments", deployment, "rollout", action]);
    let url = match to_revision {
        Some(r) => with_query(&base, &[("toRevision", &r.to_string())]),
        None => base,
    };
    let r: RolloutView = client.put_json(&url, &()).await?;
    Ok(match action {
        "pause" => format!("deployment.wasmfleet.dev/{deployment} paused"),
        "resume" => format!("deployment.wasmfleet.dev/{deployment} resumed"),
        _ => format!(
            "deployment.wasmfleet.dev/{deployment} rolled back (revision {} rolls out now)",
            r.revision
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_like_kubectl_with_waves() {
        let r = RolloutView {
            deployment: "d".into(),
            revision: 3,
            stable: Some(2),
            phase: "Progressing".into(),
            wave: 2,
            waves: 4,
            replicas: 10,
            updated: 3,
            ready: 2,
            message: String::new(),
        };
        assert_eq!(
            progress_line(&r),
            "Waiting for rollout of revision 3 to finish: wave 2/4, 2 of 10 updated replicas are available..."
        );
    }
}
