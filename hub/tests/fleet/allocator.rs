//! The hub binary's allocator hands freed memory back on its own (`hub/src/main.rs`): without
//! jemalloc's background threads, an idle hub keeps what an apply to a large fleet left behind
//! (1.6 against 0.9 KiB per node at 50,000 nodes, `BENCHMARKS.md`).

use crate::common::*;

/// The names of a process's threads, from /proc.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the hub's threads");
    tasks
        .map(|t| {
            let comm = t.expect("a thread").path().join("comm");
            std::fs::read_to_string(comm)
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_hub_purges_freed_pages_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let names = thread_names(hub.proc.child.id());
    assert!(
        names.iter().any(|n| n == "jemalloc_bg_thd"),
        "no jemalloc background thread among the hub's threads: {names:?}"
    );
}
