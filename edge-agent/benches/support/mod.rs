//! What the agent's benches share: medians and the resident memory of this process.

use std::time::Duration;

use tokio::task::JoinHandle;

/// The median of `v` (not empty).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// This process's resident set size, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Resident bytes each of `idle` (running, idle instances) added since `before`; stops them.
pub fn per_instance<T>(before: u64, idle: Vec<JoinHandle<T>>) -> u64 {
    let per = rss_bytes().saturating_sub(before) / idle.len().max(1) as u64;
    for t in idle {
        t.abort();
    }
    per
}
