//! Processes as /proc shows them, and stopping a child politely: the demo stops its agents,
//! the hub the mosquitto it runs, and the simulator and tests read memory and children.

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The children of a process (those of each of its threads), from /proc; none if it is gone.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Sends SIGTERM, so the child can say goodbye (an agent announces itself offline, mosquitto
/// closes its clients) before it exits.
pub fn sigterm(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill only sends a signal, to a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_found_and_a_gone_process_has_none() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = child_pids(std::process::id()).contains(&child.id());
        let rss = rss_kib(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "sleep not among this process's children");
        assert!(rss.is_some_and(|k| k > 0), "{rss:?}");
        assert!(child_pids(child.id()).is_empty());
        assert_eq!(rss_kib(child.id()), None);
    }
}
