//! `wasmfleet logs DEPLOYMENT [-f]`: the modules' stdout/stderr lines shipped by the agents.

use std::time::Duration;

use anyhow::Result;

use super::client::Client;
use crate::api::types::LogRecord;

/// Formats one line as `[workload@node] text` (stderr lines marked).
pub fn format_line(l: &LogRecord) -> String {
    let mark = if l.stream == "stderr" {
        " (stderr)"
    } else {
        ""
    };
    format!("[{}@{}]{mark} {}", l.workload, l.node, l.line)
}

/// Prints the last `tail` lines, then, with `follow`, new lines as they arrive until
/// `stop` resolves.
pub async fn logs(
    client: &Client,
    deployment: &str,
    tail: u32,
    follow: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let first: Vec<LogRecord> = client
        .get(&format!("/v1/deployments/{deployment}/logs?limit={tail}"))
        .await?;
    let mut cursor = first.last().map_or(0, |l| l.id);
    for l in &first {
        println!("{}", format_line(l));
    }
    if !follow {
        return Ok(());
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let next: Vec<LogRecord> = client
            .get(&format!(
                "/v1/deployments/{deployment}/logs?after={cursor}&limit=1000"
            ))
            .await?;
        for l in &next {
            println!("{}", format_line(l));
        }
        cursor = next.last().map_or(cursor, |l| l.id);
    }
}
