//! `wasmfleet logs DEPLOYMENT [-f]`: the modules' stdout/stderr lines shipped by the agents.
//!
//! Lines are module output, i.e. untrusted: as text, control characters are escaped so a
//! module cannot drive the operator's terminal; `-o json` prints each record exactly, one
//! JSON object per line.

use std::time::Duration;

use anyhow::Result;

use super::client::{Client, path, with_query};
use super::sanitize::visible;
use crate::api::types::LogRecord;

/// How `logs` prints lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// `[workload@node] text`, control characters escaped.
    #[default]
    Text,
    /// One JSON object per line, text exactly as written.
    Json,
}

/// Formats one line as `[workload@node] text` (stderr and agent lines marked), with control
/// characters escaped.
pub fn format_line(l: &LogRecord) -> String {
    let mark = match l.stream.as_str() {
        "stderr" => " (stderr)",
        "agent" => " (agent)",
        _ => "",
    };
    format!(
        "[{}@{}]{mark} {}",
        visible(&l.workload),
        visible(&l.node),
        visible(&l.line)
    )
}

fn print(l: &LogRecord, format: LogFormat) {
    match format {
        LogFormat::Text => println!("{}", format_line(l)),
        LogFormat::Json => match serde_json::to_string(l) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot encode a log line: {e}"),
        },
    }
}

/// Prints the last `tail` lines, then, with `follow`, new lines as they arrive until
/// `stop` resolves.
pub async fn logs(
    client: &Client,
    deployment: &str,
    tail: u32,
    follow: bool,
    format: LogFormat,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let base = path(&["v1", "deployments", deployment, "logs"]);
    let first: Vec<LogRecord> = client
        .get(&with_query(&base, &[("limit", &tail.to_string())]))
        .await?;
    let mut cursor = first.last().map_or(0, |l| l.id);
    for l in &first {
        print(l, format);
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
            .get(&with_query(
                &base,
                &[("after", &cursor.to_string()), ("limit", "1000")],
            ))
            .await?;
        for l in &next {
            print(l, format);
        }
        cursor = next.last().map_or(cursor, |l| l.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_cannot_drive_the_terminal_through_its_lines() {
        let l = LogRecord {
            id: 1,
            ts_ms: 1,
            deployment: "d".into(),
            workload: "d-0".into(),
            node: "a".into(),
            stream: "stdout".into(),
            line: "\x1b]0;owned\x07\x1b[2Jclean".into(),
        };
        assert_eq!(format_line(&l), "[d-0@a] \\x1b]0;owned\\x07\\x1b[2Jclean");
        let json = serde_json::to_string(&l).unwrap();
        let back: LogRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.line, l.line, "JSON keeps the exact text");
    }
}
