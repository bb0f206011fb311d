//! `wasmfleet`: the hub (`serve`), the kubectl-like client, and the one-command `demo`.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wasmfleet_hub::cli::{Cli, Command, run};

/// The hub's allocator: jemalloc, whose background threads hand freed pages back to the system.
///
/// An apply to a large fleet allocates and frees short-lived buffers (frames, topics, events,
/// a new placement: 1.7 KB per node at the peak) among the records that stay (statuses,
/// desired states). glibc's arenas keep a page resident while any record lives on it, and
/// `malloc_trim` only returns whole free pages: at 50,000 idle nodes half the hub's resident
/// memory was free memory (1.6 KiB per node resident against 0.8 KiB live). jemalloc keeps
/// each size class on pages of its own and purges the pages a class no longer uses (0.9 KiB
/// per node, `BENCHMARKS.md`). Only the binary sets it: the benches count allocations with an
/// allocator of their own.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at the first allocation; `_RJEM_MALLOC_CONF` in the environment
/// overrides them.
/// - `background_thread`: pages are purged by jemalloc's own threads, not only when an
///   allocation happens to pass by, so an idle hub gives back what a burst left behind.
/// - `dirty_decay_ms:1000`: freed pages go back within about a second instead of ten.
#[cfg(not(target_env = "msvc"))]
// SAFETY: jemalloc reads this symbol as a `const char *` (a thin pointer, as
// `Option<&c_char>` is) to a NUL-terminated string; the string is a static C literal.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&std::ffi::c_char> =
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:1000".as_ptr() });

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
