//! `wasmfleet`: the hub (`serve`), the kubectl-like client, and the one-command `demo`.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmfleet_hub::cli::{Cli, Command, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo prints its own progress; the in-process hub's info lines would drown it.
    let default_filter = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info,rmqtt=warn,rmqtt_retainer=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text for log files and journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
