//! `edge-agent` binary: parse arguments, set up logging, run the [`Agent`] until SIGINT or
//! SIGTERM.

use anyhow::Context as _;
use clap::Parser as _;
use edge_agent::{Agent, Cli};
use tracing_subscriber::EnvFilter;

/// One thread runs the agent loop and every instance: guests yield at each epoch tick, so
/// they share it fairly, and a small device pays for one runtime thread, not one per core.
/// (Blocking work, such as disk writes and local compiles, goes to tokio's blocking pool.)
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text for log files and journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Cli::parse().into_config()?;
    tracing::info!(node = %config.node, data = %config.data_dir.display(), "starting edge-agent");
    let agent = Agent::new(config).context("cannot start the agent")?;
    agent.run(shutdown_signal()).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
